"""A flash sale under load: shoppers sign up, browse, then all hit one activity's seckill at once.

    locust -f bench/locust/locustfile.py --headless -u 200 -r 50 --run-time 2m \\
        --host http://127.0.0.1:8002 --user-url http://127.0.0.1:8001 \\
        --order-url http://127.0.0.1:8003

--host is activity_service. Each shopper registers and logs in (user_service), lists the
activities, then waits at a gate until every shopper of the run is ready, so the seckill calls
start at the same moment. 201 (placed), 200 (this shopper's existing order) and 409 sold_out
are the expected answers, not failures. Each shopper makes --attempts seckill calls, looks at
its own orders, and stops; the run ends when all have. A shopper who won pays its order
(--pay-share of them), cancels it (--cancel-share) or walks away; a walked-away order expires
after the activity's --pay-within seconds and its unit goes back on sale.

When the run stops, the invariant check (testkit/invariants.py, as in the tests and the
benchmark) runs through the API as admin (ADMIN_USERNAME / ADMIN_PASSWORD): order_service
holds exactly stock - remaining orders created or paid for the activity, one per user, every
order a shopper was answered with exists for that shopper, remaining is 0 once sold_out was
answered (unless units came back), and no order is left unpaid 5 s past its expires_at. When
the last deadline of the run is within --settle-timeout, the check waits for it first.
It prints one line, "INVARIANT OK ..." or "INVARIANT FAILED ...", and a failed check makes
locust exit non-zero. A set-up that fails (the admin's login, creating the activity) stops
the run at once with one line, "LOAD SET-UP FAILED: <cause>", and exit status 1.
The activity is created at the start (stock: --stock, or half the shoppers), or given
with --activity-id. With --challenge N the created activity asks for an ALTCHA challenge
of difficulty N; shoppers solve one before each seckill call (the first before the gate),
as the ALTCHA widget does in a browser.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import secrets
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import gevent
import requests
from gevent.event import Event
from locust import HttpUser, between, events, task
from locust.env import Environment
from locust.exception import StopUser

from testkit.altcha_solver import solve
from testkit.invariants import EXPIRY_BOUND, Answers, Books, overdue, settle

logger = logging.getLogger("seckill.load")
PASSWORD = "load-test-password"  # strong enough for the password policy
# How often a shopper asks again when user_service's password pool is full (503 busy).
BUSY_RETRIES = 60
SECKILL = "/activities/[id]/seckill"


@events.init_command_line_parser.add_listener
def add_arguments(parser) -> None:
    parser.add_argument(
        "--user-url",
        env_var="LOCUST_USER_URL",
        default="http://127.0.0.1:8001",
        help="user_service base URL",
    )
    parser.add_argument(
        "--order-url",
        env_var="LOCUST_ORDER_URL",
        default="http://127.0.0.1:8003",
        help="order_service base URL",
    )
    parser.add_argument(
        "--activity-id",
        env_var="LOCUST_ACTIVITY_ID",
        type=int,
        default=0,
        help="the activity to hit; 0 creates one at the start of each run",
    )
    parser.add_argument(
        "--stock",
        env_var="LOCUST_STOCK",
        type=int,
        default=0,
        help="stock of the created activity; 0 means half the shoppers",
    )
    parser.add_argument(
        "--attempts",
        env_var="LOCUST_ATTEMPTS",
        type=int,
        default=3,
        help="seckill calls per shopper",
    )
    parser.add_argument(
        "--challenge",
        env_var="LOCUST_CHALLENGE",
        type=int,
        default=0,
        help="the created activity asks for an ALTCHA challenge of this difficulty (0: none)",
    )
    parser.add_argument(
        "--gate-timeout",
        env_var="LOCUST_GATE_TIMEOUT",
        type=float,
        default=120,
        help="longest wait for all shoppers to be ready before the seckill starts",
    )
    parser.add_argument(
        "--settle-timeout",
        env_var="LOCUST_SETTLE_TIMEOUT",
        type=float,
        default=15,
        help="how long the final check waits for orders to arrive",
    )
    parser.add_argument(
        "--pay-within",
        env_var="LOCUST_PAY_WITHIN",
        type=int,
        default=900,
        help="pay_within_seconds of the created activity (10 to 86400)",
    )
    parser.add_argument(
        "--pay-share",
        env_var="LOCUST_PAY_SHARE",
        type=float,
        default=0.0,
        help="share of winners who pay their order",
    )
    parser.add_argument(
        "--cancel-share",
        env_var="LOCUST_CANCEL_SHARE",
        type=float,
        default=0.0,
        help="share of winners who cancel it; the rest walk away and let it expire",
    )
    parser.add_argument("--admin-username", env_var="ADMIN_USERNAME", default="admin")
    parser.add_argument("--admin-password", env_var="ADMIN_PASSWORD", default="", is_secret=True)


@dataclass
class Run:
    """What one load run (test_start to test_stop) has seen."""

    activity_id: int
    created: bool
    shoppers: int
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    gate: Event = field(default_factory=Event)
    arrived: int = 0
    finished: int = 0
    answers: Counter = field(default_factory=Counter)
    order_of: dict[int, str] = field(default_factory=dict)
    last_deadline: datetime | None = None  # the latest expires_at of an unpaid order
    checked: bool = False
    names: itertools.count = field(default_factory=itertools.count)

    def arrive(self) -> None:
        self.arrived += 1
        if self.arrived >= self.shoppers:
            self.gate.set()

    def leave(self, environment: Environment) -> None:
        """A shopper is done; the last one ends the run."""
        self.finished += 1
        if self.finished >= self.shoppers:
            gevent.spawn(end_run, environment)
        raise StopUser()

    def username(self) -> str:
        return f"lt{self.token}_{next(self.names)}"


RUN: Run | None = None


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def admin_session(options) -> requests.Session:
    session = requests.Session()
    try:
        reply = session.post(
            f"{options.user_url}/tokens",
            json={"username": options.admin_username, "password": options.admin_password},
            timeout=30,
        )
    except requests.RequestException as exc:
        raise RuntimeError(
            f"admin login: user_service does not answer at {options.user_url}"
            f" ({type(exc).__name__}); is `make run` running?"
        ) from None
    if reply.status_code != 200:
        raise RuntimeError(f"admin login failed: {reply.status_code} {reply.text[:200]}")
    session.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"
    return session


def create_activity(environment: Environment, stock: int) -> int:
    now = datetime.now(UTC)
    difficulty = environment.parsed_options.challenge
    guard = {"challenge": True, "challenge_difficulty": difficulty} if difficulty else {}
    body = guard | {
        "name": f"Load run {now:%H:%M:%S}",
        "product_name": "Keyboard",
        "price": "19.90",
        "stock": stock,
        "starts_at": iso(now - timedelta(minutes=1)),
        "ends_at": iso(now + timedelta(hours=1)),
        "pay_within_seconds": environment.parsed_options.pay_within,
    }
    try:
        reply = admin_session(environment.parsed_options).post(
            f"{environment.host}/activities", json=body, timeout=30
        )
    except requests.RequestException as exc:
        raise RuntimeError(
            f"creating the activity: activity_service does not answer at {environment.host}"
            f" ({type(exc).__name__})"
        ) from None
    if reply.status_code != 201:
        raise RuntimeError(f"creating the activity failed: {reply.status_code} {reply.text[:200]}")
    return reply.json()["id"]


@events.init.add_listener
def check_options(environment: Environment, **_) -> None:
    options = environment.parsed_options
    if options is None:
        return
    if options.master or options.worker:
        # The gate, the answers and the final check live in one process's memory.
        sys.exit("locustfile: runs in one process; drop --master / --worker")
    if not options.admin_password:
        sys.exit(
            "locustfile: set ADMIN_PASSWORD (or --admin-password): the run creates its "
            "activity and checks every order as admin"
        )


@events.test_start.add_listener
def start_run(environment: Environment, **_) -> None:
    global RUN
    options = environment.parsed_options
    shoppers = environment.runner.target_user_count
    if options.activity_id:
        RUN = Run(options.activity_id, created=False, shoppers=shoppers)
    else:
        stock = options.stock or max(1, shoppers // 2)
        try:
            activity_id = create_activity(environment, stock)
        except RuntimeError as exc:
            set_up_failed(environment, exc)
            return
        RUN = Run(activity_id, created=True, shoppers=shoppers)
        logger.info("created activity %s with stock %s", RUN.activity_id, stock)
    logger.info("%s shoppers will hit activity %s", shoppers, RUN.activity_id)


def set_up_failed(environment: Environment, cause: Exception) -> None:
    """One line naming the cause, and the run stops at once with a non-zero exit: no shopper
    starts (each would fail, with a traceback, for the whole run time)."""
    print(f"LOAD SET-UP FAILED: {cause}", file=sys.stderr, flush=True)
    environment.process_exit_code = 1
    if environment.parsed_options.headless:
        os._exit(1)  # nothing ran: no stats, no invariant check to print
    gevent.spawn(environment.runner.stop)  # the web UI stays up for another try


class Shopper(HttpUser):
    host = "http://127.0.0.1:8002"
    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        if RUN is None:  # the set-up failed (set_up_failed): nothing to shop for
            raise StopUser()
        self.run, self.token, self.attempts, self.won = RUN, None, 0, None
        self.guarded, self.solution = False, None
        options = self.environment.parsed_options
        try:
            self.token = self.sign_up(options.user_url)
            self.client.get("/activities?limit=20", name="/activities")
            reply = self.client.get(f"/activities/{self.run.activity_id}", name="/activities/[id]")
            self.guarded = reply.ok and reply.json().get("challenge", False)
            if self.token is not None and self.guarded:
                self.solution = self.solve()  # the first one before the gate, as a browser would
        finally:
            self.run.arrive()
        if self.token is None:
            self.run.leave(self.environment)
        if not self.run.gate.wait(timeout=options.gate_timeout):
            logger.warning(
                "not every shopper was ready after %ss; starting anyway", options.gate_timeout
            )
            self.run.gate.set()

    def sign_up(self, user_url: str) -> str | None:
        username = self.run.username()
        credentials = {"username": username, "password": PASSWORD}
        reply = self.post_when_not_busy(f"{user_url}/users", credentials, "/users")
        if reply.status_code != 201:
            return None
        self.user_id = reply.json()["id"]
        reply = self.post_when_not_busy(f"{user_url}/tokens", credentials, "/tokens")
        if reply.status_code != 200:
            return None
        return reply.json()["access_token"]

    def post_when_not_busy(self, url: str, body: dict, name: str):
        """POST, and again after Retry-After while user_service's password pool is full: a
        sign-up storm of hundreds of shoppers is what that bound is for (docs/api.md)."""
        for _ in range(BUSY_RETRIES):
            with self.client.post(url, json=body, name=name, catch_response=True) as reply:
                if reply.status_code != 503 or reply.headers.get("Retry-After") is None:
                    return reply
                reply.success()  # the documented answer to a storm, not a failure
            gevent.sleep(float(reply.headers["Retry-After"]))
        return reply

    @task
    def seckill(self) -> None:
        if self.attempts >= self.environment.parsed_options.attempts:
            self.finish()
        self.attempts += 1
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.guarded:
            # Each solution buys once: a later attempt solves a new challenge.
            headers["X-Altcha"] = self.solution or self.solve()
            self.solution = None
        with self.client.post(
            f"/activities/{self.run.activity_id}/seckill",
            headers=headers,
            name=SECKILL,
            catch_response=True,
        ) as reply:
            self.judge(reply)

    def solve(self) -> str:
        """A solved ALTCHA challenge for this shopper and activity (docs/api.md)."""
        reply = self.client.get(
            f"/activities/{self.run.activity_id}/challenge",
            headers={"Authorization": f"Bearer {self.token}"},
            name="/activities/[id]/challenge",
        )
        reply.raise_for_status()
        return solve(reply.json())

    def judge(self, reply) -> None:
        try:
            body = reply.json()
        except ValueError:
            body = None
        code = body.get("code") if isinstance(body, dict) else None
        if reply.status_code in (200, 201) and isinstance(body, dict) and "order_no" in body:
            known = self.run.order_of.setdefault(self.user_id, body["order_no"])
            if known != body["order_no"]:
                reply.failure(f"second order {body['order_no']} for user {self.user_id}")
                return
            self.run.answers["placed" if reply.status_code == 201 else "repeat"] += 1
            if reply.status_code == 201:
                self.won = body
            reply.success()
        elif reply.status_code == 409 and code == "sold_out":
            self.run.answers["sold_out"] += 1
            reply.success()
        else:
            reply.failure(f"{reply.status_code} {code or reply.text[:100]}")

    def finish(self) -> None:
        options = self.environment.parsed_options
        if self.won is not None:
            self.after_purchase(options)
        self.client.get(
            f"{options.order_url}/orders?activity_id={self.run.activity_id}",
            headers={"Authorization": f"Bearer {self.token}"},
            name="/orders (own)",
        )
        self.run.leave(self.environment)

    def after_purchase(self, options) -> None:
        """Pay, cancel or walk away, in the configured shares."""
        draw = random.random()
        order_no = self.won["order_no"]
        if draw < options.pay_share:
            action = "pay"
        elif draw < options.pay_share + options.cancel_share:
            action = "cancel"
        else:
            self.run.answers["walked"] += 1
            deadline = datetime.fromisoformat(self.won["expires_at"].replace("Z", "+00:00"))
            self.run.last_deadline = max(self.run.last_deadline or deadline, deadline)
            return
        with self.client.post(
            f"{options.order_url}/orders/{order_no}/{action}",
            headers={"Authorization": f"Bearer {self.token}"},
            name=f"/orders/[no]/{action}",
            catch_response=True,
        ) as reply:
            if reply.status_code == 200:
                self.run.answers["paid" if action == "pay" else "cancelled"] += 1
                reply.success()
            else:
                reply.failure(f"{action}: {reply.status_code} {reply.text[:100]}")


def end_run(environment: Environment) -> None:
    """Every shopper is done: stop the run (and, headless, locust itself)."""
    if environment.parsed_options.headless:
        environment.runner.quit()
    else:
        environment.runner.stop()


def all_orders(session: requests.Session, order_url: str, activity_id: int) -> list[dict]:
    orders: list[dict] = []
    while True:
        reply = session.get(
            f"{order_url}/orders",
            params={"activity_id": activity_id, "limit": 1000, "offset": len(orders)},
            timeout=30,
        )
        reply.raise_for_status()
        page = reply.json()
        orders.extend(page["items"])
        if not page["items"] or len(orders) >= page["total"]:
            return orders


def books_from_api(session: requests.Session, environment: Environment, run: Run) -> Books:
    """The activity and its orders as the API shows them to an admin (records are not shown)."""
    options = environment.parsed_options
    reply = session.get(f"{environment.host}/activities/{run.activity_id}", timeout=30)
    reply.raise_for_status()
    activity = reply.json()
    orders = all_orders(session, options.order_url, run.activity_id)
    return Books(
        stock=activity["stock"],
        remaining=activity["remaining"],
        orders=[(order["order_no"], order["user_id"]) for order in orders],
        statuses={order["order_no"]: order["status"] for order in orders},
        overdue=overdue(orders, datetime.now(UTC)),
    )


def answers_of(run: Run) -> Answers:
    return Answers(
        placed=run.answers["placed"],
        orders={user: {order_no} for user, order_no in run.order_of.items()},
        sold_out=run.answers["sold_out"],
        # Every shopper of a run that made its own activity is done: each order was answered.
        complete=run.created and run.finished >= run.shoppers,
    )


def check_invariants(environment: Environment) -> bool:
    """Check the books through the API until they balance or --settle-timeout passes; print
    one line."""
    run, options = RUN, environment.parsed_options
    if run is None or run.checked:
        return True
    run.checked = True
    if run.last_deadline is not None:
        # Wait for the walked-away orders to expire, if that is due within the settle time.
        wait = (run.last_deadline - datetime.now(UTC)).total_seconds() + EXPIRY_BOUND
        if 0 < wait <= options.settle_timeout:
            gevent.sleep(wait)
    try:
        session = admin_session(options)
        books, found = settle(
            lambda: books_from_api(session, environment, run),
            answers_of(run),
            timeout=options.settle_timeout,
        )
    except (requests.RequestException, RuntimeError, KeyError) as exc:
        found, books = [f"the check could not read the API: {exc}"], None
    answers = " ".join(
        f"{k}={run.answers[k]}"
        for k in ("placed", "repeat", "sold_out", "paid", "cancelled", "walked")
    )
    if books is not None:
        statuses = Counter((books.statuses or {}).values())
        figures = (
            f"activity={run.activity_id} stock={books.stock} "
            f"remaining={books.remaining} orders={len(books.orders)} "
            f"users={len({user for _, user in books.orders})} "
            + " ".join(f"{s}={statuses[s]}" for s in ("created", "paid", "cancelled", "expired"))
        )
    else:
        figures = f"activity={run.activity_id}"
    verdict = "INVARIANT OK" if not found else "INVARIANT FAILED: " + "; ".join(found)
    print(f"{verdict} | {figures} | answers {answers}", flush=True)
    return not found


@events.test_stop.add_listener
def check_at_stop(environment: Environment, **_) -> None:
    if not check_invariants(environment):
        environment.process_exit_code = 1


@events.quitting.add_listener
def check_at_quit(environment: Environment, **_) -> None:
    # Ctrl-C quits before the runner stops; the check still runs, once.
    if not check_invariants(environment):
        environment.process_exit_code = 1
