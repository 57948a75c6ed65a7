"""Several activity_service instances on one database, end to end: real processes, real MySQL.

Each instance runs 2 workers on a port of its own. Clients spread a storm over
them, found either through Consul (the test double) or through a static,
comma-separated list, and one instance is SIGKILLed mid-storm. The guarantees
are checked from the databases (deployment/invariants.py). Then the buyers of a
sold-out activity cancel, order_service hands the units back to one instance,
and every instance must sell again within about a second: no worker's memory of
"sold out" outlives the change by more than its trust
(activity_service/seckill.py CLOSED_TRUST_SECONDS).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable

import aiohttp
import pytest

from common.discovery import StaticResolver
from deployment.poll import eventually
from deployment.stack import Stack
from tests.doubles.consul import ConsulDouble
from tests.e2e.test_discovery import consul_env
from tests.factories import Account, Api
from tests.seckill_checks import StormResult, check_invariants

pytestmark = pytest.mark.slow

WORKERS = {"SECKILL_WORKERS": "2"}
EXTRA = ("activity_b", "activity_c")
# The memory of a closed activity is trusted for 1 s; this leaves room for a loaded machine.
REOPEN_BOUND_SECONDS = 3.0


class ConsulInstances:
    """The passing activity_service instances, as a client following Consul would see them."""

    def __init__(self, double: ConsulDouble):
        self.double, self.urls = double, []

    def refresh(self) -> list[str]:
        entries = self.double.passing("activity_service")
        self.urls = sorted(
            f"http://{e['Service']['Address']}:{e['Service']['Port']}" for e in entries
        )
        return self.urls

    def instances(self) -> list[str]:
        return self.urls

    async def follow(self) -> None:
        while True:
            await asyncio.to_thread(self.refresh)
            await asyncio.sleep(0.2)


async def split_storm(
    api: Api,
    activity_id: int,
    accounts: list[Account],
    per_user: int,
    instances: Callable[[], list[str]],
    result: StormResult,
    answered_by: Counter,
    concurrency: int = 32,
) -> None:
    """Every account asks per_user times, round robin over the instances. A request that
    gets no answer (its instance died) counts as disconnected and is sent to the next
    instance, as a load balancer would: asking again never makes a second order."""
    names = {api.stack.url(name): name for name in api.stack.services}
    turn = itertools.count()
    gate = asyncio.Semaphore(concurrency)

    async def one(account: Account) -> None:
        async with gate:
            for _ in range(3):
                urls = instances()
                name = names[urls[next(turn) % len(urls)]]
                path = f"/activities/{activity_id}/seckill"
                try:
                    reply = await api.call("POST", name, path, token=account.token)
                except (TimeoutError, aiohttp.ClientError):
                    result.disconnected += 1
                    continue
                answered_by[name] += 1
                result.record(account.id, reply.status, reply.body)
                return

    await asyncio.gather(*(one(a) for a in accounts for _ in range(per_user)))


async def storm_with_a_kill(
    stack: Stack, api: Api, instances: Callable[[], list[str]], victim: str
) -> None:
    """A storm over the instances; victim is SIGKILLed once it has answered some of it."""
    stock, accounts = 80, await api.new_users(120)
    activity = await api.create_activity(stock=stock)
    result, answered_by = StormResult(), Counter()
    running = asyncio.create_task(
        split_storm(api, activity["id"], accounts, 2, instances, result, answered_by)
    )
    await eventually(lambda: answered_by[victim] >= 10, 60, f"{victim} to answer", interval=0.01)
    stack.kill(victim)
    after_kill = sum(answered_by.values())
    await running

    named = {stack.url(n): n for n in stack.services}
    assert all(answered_by[named[url]] for url in instances() if named[url] != victim), answered_by
    assert sum(answered_by.values()) > after_kill, "no traffic after the kill"
    # No oversell, no duplicate, every acknowledged order in order_service once relays drain.
    await check_invariants(stack, activity["id"], stock, result, sold_out=True, crashed=True)


async def time_reopening_after_cancels(
    stack: Stack, api: Api, instances: list[str]
) -> dict[str, float]:
    """Sell an activity out, keep every instance answering sold_out from memory, let its
    buyers cancel (order_service hands the units back to one activity_service instance),
    and time how long after the units are back each instance takes to sell again."""
    activity = await api.create_activity(stock=len(instances))
    holders = await api.new_users(len(instances))
    buyers = await api.new_users(len(instances))
    order_nos = []
    for holder in holders:
        reply = await api.seckill(activity["id"], holder.token)
        assert reply.status == 201, reply
        order_nos.append(reply.body["order_no"])
    path = f"/activities/{activity['id']}/seckill"
    cancels_sent: float | None = None
    sold_at: dict[str, float] = {}

    async def poll(name: str, buyer: Account) -> None:
        # Asks all along, so each of the instance's workers keeps "sold out" fresh in memory.
        while True:
            reply = await api.call("POST", name, path, token=buyer.token)
            if reply.status == 201:
                assert cancels_sent is not None, "sold before any unit was given back"
                sold_at[name] = time.monotonic()
                return
            assert reply.code == "sold_out", reply
            await asyncio.sleep(0.02)

    def all_units_back() -> bool:
        (row,) = stack.query(
            "activity_service", "SELECT released FROM activities WHERE id = %s", (activity["id"],)
        )
        return row["released"] == len(instances)

    pollers = asyncio.gather(*(poll(n, b) for n, b in zip(instances, buyers, strict=True)))
    await asyncio.sleep(0.5)  # every instance has answered sold_out a few times
    # Stock cannot be raised once a sale has started (docs/api.md): units come back when
    # orders are cancelled or expire.
    cancels_sent = time.monotonic()
    replies = await asyncio.gather(
        *(
            api.call("POST", "order_service", f"/orders/{order_no}/cancel", token=holder.token)
            for holder, order_no in zip(holders, order_nos, strict=True)
        )
    )
    assert all(r.status == 200 for r in replies), replies
    await eventually(all_units_back, 10, "the units to be back", interval=0.005)
    units_back = time.monotonic()
    await asyncio.wait_for(pollers, timeout=30)
    # An instance may sell a unit before the last one is back: that counts as no wait at all.
    return {name: max(0.0, at - units_back) for name, at in sold_at.items()}


def report(label: str, elapsed: dict[str, float]) -> None:
    """The measured figures, for `pytest -s` (docs/scaling.md quotes them)."""
    seconds = {name: round(value, 3) for name, value in elapsed.items()}
    print(f"\nsold again after the units came back ({label}): {seconds}")


@pytest.fixture
async def session():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def test_three_instances_behind_consul_survive_a_kill_and_forget_sold_out(own_stack, session):
    double = ConsulDouble().start()
    try:
        stack = own_stack(**consul_env(double, **WORKERS))
        for name in EXTRA:
            stack.add_instance("activity_service", name, **WORKERS)
        following = ConsulInstances(double)
        await eventually(lambda: len(following.refresh()) == 3, 20, "three activity instances")
        watcher = asyncio.create_task(following.follow())
        try:
            api = Api(stack, session)
            await storm_with_a_kill(stack, api, following.instances, victim="activity_b")
            alive = ["activity_service", "activity_c"]
            elapsed = await time_reopening_after_cancels(stack, api, alive)
        finally:
            watcher.cancel()
    finally:
        double.stop()
    report("Consul", elapsed)
    assert set(elapsed) == set(alive)
    assert max(elapsed.values()) < REOPEN_BOUND_SECONDS, elapsed


async def test_instances_in_a_static_list_survive_a_kill_and_forget_sold_out(own_stack, session):
    stack = own_stack(**WORKERS)
    # Peers from comma-separated lists: two order_service instances for every activity one.
    stack.add_instance("order_service", "order_b")
    orders = ",".join(stack.url(n) for n in ("order_service", "order_b"))
    stack.stop("activity_service")
    stack.start("activity_service", ORDER_SERVICE_URL=orders)
    for name in EXTRA:
        stack.add_instance("activity_service", name, ORDER_SERVICE_URL=orders, **WORKERS)
    names = ("activity_service", *EXTRA)
    activities = ",".join(stack.url(n) for n in names)
    # ... and order_service hands units back to any of the activity_service instances.
    for name in ("order_service", "order_b"):
        stack.stop(name)
        stack.start(name, ACTIVITY_SERVICE_URL=activities)
    listed = StaticResolver({"activity_service": activities})
    api = Api(stack, session)

    await storm_with_a_kill(
        stack, api, lambda: listed.instances("activity_service"), victim="activity_c"
    )
    alive = ["activity_service", "activity_b"]
    elapsed = await time_reopening_after_cancels(stack, api, alive)
    report("static", elapsed)
    assert set(elapsed) == set(alive)
    assert max(elapsed.values()) < REOPEN_BOUND_SECONDS, elapsed
