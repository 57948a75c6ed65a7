"""The seckill's guarantees, checked one way by the tests, `make bench` and the Locust run.

violations() is pure: it takes what the databases (or the API) hold for one
activity and what clients were answered, and names every broken guarantee:

- stock is conserved: stock - remaining == orders created or paid (== records
  not released), and never oversold nor above stock;
- every unit given back exactly once: cancelled + expired orders == released
  records, no order both paid and released, and both relays drained;
- one record per user, and every record an order in order_service, for the
  same user, and no order without a record (nor, through the API, more orders
  than were sold);
- every hand-off delivered: no record is left undelivered (activity_service's outbox);
- clients: one order number per user, each answered order held for that user,
  at most one 201 per user, no 5xx; once every request was answered, 201s ==
  orders and every order was answered; sold_out only once nothing remains.

books_from_databases() loads the books through a query function (a Stack's);
the Locust file loads them from the API. settle() polls until the books
balance, because order_service receives its orders a moment after the sale.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from testkit.poll import wait_until

Query = Callable[..., list[dict]]  # (service, sql, args) -> rows, as Stack.query
# An unpaid order is expired within this many seconds after its expires_at.
EXPIRY_BOUND = 5.0


@dataclass
class Books:
    """What the services hold for one activity."""

    stock: int
    remaining: int
    orders: list[tuple[str, int]]  # (order_no, user_id) of order_service's orders
    records: list[tuple[str, int]] | None = None  # the seckill records; None through the API
    outbox: int = 0  # hand-offs not delivered yet
    statuses: dict[str, str] | None = None  # order_no -> order_service's status, when read
    released: list[str] | None = None  # order_nos of released records; None through the API
    release_outbox: int = 0  # releases not delivered yet
    overdue: int = 0  # orders still `created` more than EXPIRY_BOUND past their expires_at


@dataclass
class Answers:
    """What clients were answered."""

    placed: int = 0  # 201s
    orders: dict[int, set[str]] | None = None  # user id -> order_nos of 200/201s, when tracked
    placed_by: Counter = field(default_factory=Counter)  # user id -> 201s, when tracked
    sold_out: int = 0  # 409 sold_out answers
    server_errors: int = 0  # 5xx answers
    unanswered: int = 0  # requests that got no answer at all
    complete: bool = True  # every request ran to its answer (no crash, no time cap)


def duplicates(values) -> dict:
    return {value: n for value, n in Counter(values).items() if n > 1}


def violations(books: Books, answers: Answers | None = None, sold_out: bool = False) -> list[str]:
    """Every broken guarantee, named; [] when the books balance. sold_out: demand exceeded
    stock, so all of it must be sold."""
    found = []
    stock, left = books.stock, books.remaining
    if left < 0:
        found.append(f"oversold: remaining is {left}")
    if left > stock:
        found.append(f"remaining {left} is above stock {stock}")
    if sold_out and left != 0:
        found.append(f"not sold out: remaining is {left}")
    orders = dict(books.orders)
    statuses = books.statuses or {}
    closed = {no for no, status in statuses.items() if status in ("cancelled", "expired")}
    released = set(books.released or ())
    for user, n in duplicates(user for _, user in books.orders).items():
        found.append(f"user {user} holds {n} orders")
    for order_no, n in duplicates(no for no, _ in books.orders).items():
        found.append(f"order {order_no} is held {n} times")
    live = len(books.orders) - len(closed)  # created or paid
    if live != stock - left:
        found.append(f"{live} orders created or paid but {stock - left} sold")
    if books.records is None:
        held = orders
    else:
        held = dict(books.records)
        kept = len(books.records) - len(released)
        if kept + left != stock:
            found.append(f"{kept} records not released + {left} remaining != stock {stock}")
        if books.released is not None and len(closed) != len(released):
            found.append(f"{len(closed)} orders cancelled or expired but {len(released)} released")
        for order_no in released:
            if statuses.get(order_no) == "paid":
                found.append(f"order {order_no} is both paid and released")
        for user, n in duplicates(user for _, user in books.records).items():
            found.append(f"user {user} holds {n} records")
        for order_no, user in held.items():
            if order_no not in orders:
                found.append(f"record {order_no} has no order")
            elif orders[order_no] != user:
                found.append(f"order {order_no} is for user {orders[order_no]}, its record {user}")
        for order_no in orders.keys() - held.keys():
            found.append(f"order {order_no} has no record")
    if books.outbox:
        found.append(f"{books.outbox} hand-offs still in the outbox")
    if books.overdue:
        found.append(f"{books.overdue} orders unpaid more than {EXPIRY_BOUND:g} s past expires_at")
    if books.release_outbox:
        found.append(f"{books.release_outbox} releases still in order_service's outbox")
    if answers is not None:
        found += answer_violations(answers, held, left, given_back=bool(closed or released))
    return found


def answer_violations(
    answers: Answers, held: dict[str, int], left: int, given_back: bool = False
) -> list[str]:
    """What clients were told against what is held (order_no -> user_id). given_back: units
    came back after the sale, so a sold_out answered then may not match what is left now."""
    found = []
    if answers.sold_out and left != 0 and not given_back:
        found.append(f"sold_out answered while remaining is {left}")
    if answers.server_errors:
        found.append(f"{answers.server_errors} 5xx answers")
    for user, n in answers.placed_by.items():
        if n > 1:
            found.append(f"user {user} got {n} 201s")
    for user, order_nos in (answers.orders or {}).items():
        if len(order_nos) > 1:
            found.append(f"user {user} was answered {len(order_nos)} different orders")
        for order_no in order_nos:
            if held.get(order_no) != user:
                found.append(f"order {order_no} answered to user {user} is missing")
    if answers.complete:
        if answers.unanswered:
            found.append(f"{answers.unanswered} requests got no answer")
        if answers.placed != len(held):
            found.append(f"{answers.placed} placed answers but {len(held)} orders")
        if answers.orders is not None:
            answered = set().union(*answers.orders.values())
            for order_no in held.keys() - answered:
                found.append(f"order {order_no} was never answered")
    return found


def overdue(orders: list[dict], now: datetime) -> int:
    """How many of these orders (status, expires_at as a datetime or API text) are still
    `created` more than EXPIRY_BOUND past their deadline."""
    late = 0
    for order in orders:
        deadline = order["expires_at"]
        if isinstance(deadline, str):
            deadline = datetime.fromisoformat(deadline.replace("Z", "+00:00"))
        elif deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=UTC)
        if order["status"] == "created" and now - deadline > timedelta(seconds=EXPIRY_BOUND):
            late += 1
    return late


def books_from_databases(query: Query, activity_id: int) -> Books:
    """One activity's books, read from the three services' databases."""
    (activity,) = query(
        "activity_service", "SELECT stock, remaining FROM activities WHERE id = %s", (activity_id,)
    )
    records = query(
        "activity_service",
        "SELECT order_no, user_id FROM seckill_records WHERE activity_id = %s",
        (activity_id,),
    )
    orders = query(
        "order_service",
        "SELECT order_no, user_id, status, expires_at FROM orders WHERE activity_id = %s",
        (activity_id,),
    )
    released = query(
        "activity_service",
        "SELECT order_no FROM seckill_records WHERE activity_id = %s AND released_as IS NOT NULL",
        (activity_id,),
    )
    outbox = query(
        "activity_service",
        "SELECT COUNT(*) AS n FROM seckill_records WHERE delivered_at IS NULL",
    )[0]["n"]
    release_outbox = query("order_service", "SELECT COUNT(*) AS n FROM release_outbox")[0]["n"]
    return Books(
        stock=activity["stock"],
        remaining=activity["remaining"],
        orders=[(row["order_no"], row["user_id"]) for row in orders],
        records=[(row["order_no"], row["user_id"]) for row in records],
        outbox=outbox,
        statuses={row["order_no"]: row["status"] for row in orders},
        released=[row["order_no"] for row in released],
        release_outbox=release_outbox,
        overdue=overdue(orders, datetime.now(UTC)),
    )


def settle(
    load: Callable[[], Books],
    answers: Answers | None = None,
    sold_out: bool = False,
    timeout: float = 30,
) -> tuple[Books, list[str]]:
    """Load and check until the books balance or timeout passes: the last books and violations."""
    last: list = []

    def balanced() -> bool:
        books = load()
        last[:] = [books, violations(books, answers, sold_out)]
        return not last[1]

    try:
        wait_until(balanced, timeout, "the books to balance", interval=0.5)
    except TimeoutError:
        pass
    return last[0], last[1]
