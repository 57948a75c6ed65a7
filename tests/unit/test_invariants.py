"""The shared seckill invariant check names every broken guarantee, from plain data."""

from collections import Counter
from datetime import UTC, datetime

import pytest

from testkit.invariants import Answers, Books, overdue, settle, violations

# A clean sale: stock 3, all sold to users 1-3, each answered once with a 201.
RECORDS = [("a", 1), ("b", 2), ("c", 3)]


def clean_books(**changes) -> Books:
    return Books(**{"stock": 3, "remaining": 0, "orders": RECORDS, "records": RECORDS} | changes)


def clean_answers(**changes) -> Answers:
    values = {
        "placed": 3,
        "orders": {1: {"a"}, 2: {"b"}, 3: {"c"}},
        "placed_by": Counter({1: 1, 2: 1, 3: 1}),
        "sold_out": 5,
    }
    return Answers(**values | changes)


def given_back(released: list[str], **closed: str) -> dict:
    """Books fields for a sale where the orders named in closed (status=order_no) were
    cancelled or expired and the records named in released were given back; c is paid."""
    statuses = {"a": "created", "b": "created", "c": "paid"}
    statuses |= {order_no: status for status, order_no in closed.items()}
    return {"statuses": statuses, "released": released}


def test_a_sale_with_units_given_back_and_sold_again_has_no_violations():
    orders = [*RECORDS, ("d", 4)]
    books = clean_books(
        orders=orders,
        records=orders,
        statuses={"a": "expired", "b": "cancelled", "c": "paid", "d": "created"},
        released=["a", "b"],
        remaining=1,
    )
    answers = clean_answers(
        placed=4, orders={1: {"a"}, 2: {"b"}, 3: {"c"}, 4: {"d"}}, placed_by=Counter(range(1, 5))
    )
    assert violations(books, answers) == []


def test_a_clean_sale_has_no_violations():
    assert violations(clean_books(), clean_answers(), sold_out=True) == []
    # Through the API: no records, only orders.
    assert violations(clean_books(records=None), clean_answers(), sold_out=True) == []


@pytest.mark.parametrize(
    "books, answers, named",
    [
        (
            clean_books(remaining=-1, records=[*RECORDS, ("d", 4)], orders=[*RECORDS, ("d", 4)]),
            None,
            "oversold: remaining is -1",
        ),
        (clean_books(remaining=1), None, "3 records not released + 1 remaining != stock 3"),
        (clean_books(remaining=1, records=None), None, "3 orders created or paid but 2 sold"),
        (clean_books(remaining=4, stock=3), None, "remaining 4 is above stock 3"),
        (
            clean_books(records=[("a", 1), ("b", 1), ("c", 3)]),
            None,
            "user 1 holds 2 records",
        ),
        (clean_books(orders=[("a", 1), ("b", 1), ("c", 3)]), None, "user 1 holds 2 orders"),
        (clean_books(orders=[("a", 1), ("a", 1), ("c", 3)]), None, "order a is held 2 times"),
        (clean_books(orders=RECORDS[:2]), None, "record c has no order"),
        (clean_books(orders=[*RECORDS, ("z", 9)]), None, "order z has no record"),
        (
            clean_books(orders=[("a", 1), ("b", 2), ("c", 7)]),
            None,
            "order c is for user 7, its record 3",
        ),
        (clean_books(outbox=2), None, "2 hand-offs still in the outbox"),
        # After the sale: units given back by cancelled and expired orders.
        (
            clean_books(remaining=1, **given_back(expired="b", released=[])),
            None,
            "3 records not released + 1 remaining != stock 3",
        ),
        (
            clean_books(remaining=1, **given_back(expired="b", released=["b", "c"])),
            None,
            "1 orders cancelled or expired but 2 released",
        ),
        (
            clean_books(remaining=1, **given_back(expired="b", released=["b", "c"])),
            None,
            "order c is both paid and released",
        ),
        (
            clean_books(remaining=0, **given_back(cancelled="a", released=["a"])),
            None,
            "2 orders created or paid but 3 sold",
        ),
        (clean_books(overdue=2), None, "2 orders unpaid more than 5 s past expires_at"),
        (
            clean_books(remaining=1, **given_back(expired="b", released=["b"]), release_outbox=1),
            None,
            "1 releases still in order_service's outbox",
        ),
        (
            clean_books(),
            clean_answers(orders={1: {"a", "x"}, 2: {"b"}, 3: {"c"}}),
            "user 1 was answered 2 different orders",
        ),
        (
            clean_books(),
            clean_answers(orders={1: {"a"}, 2: {"b"}, 3: {"c"}, 4: {"q"}}),
            "order q answered to user 4 is missing",
        ),
        (
            clean_books(),
            clean_answers(orders={1: {"b"}, 2: {"a"}, 3: {"c"}}),
            "order b answered to user 1 is missing",
        ),
        (
            clean_books(),
            clean_answers(placed_by=Counter({1: 2, 2: 1, 3: 1})),
            "user 1 got 2 201s",
        ),
        (clean_books(), clean_answers(placed=2), "2 placed answers but 3 orders"),
        (clean_books(), clean_answers(server_errors=4), "4 5xx answers"),
        (clean_books(), clean_answers(unanswered=1), "1 requests got no answer"),
        (
            clean_books(),
            clean_answers(orders={1: {"a"}, 2: {"b"}}),
            "order c was never answered",
        ),
        (
            clean_books(remaining=1, records=RECORDS[:2], orders=RECORDS[:2]),
            clean_answers(placed=2, orders={1: {"a"}, 2: {"b"}}),
            "sold_out answered while remaining is 1",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_each_broken_guarantee_is_named(books, answers, named):
    assert named in violations(books, answers)


def test_a_sale_expected_to_sell_out_must_leave_nothing():
    books = clean_books(remaining=1, records=RECORDS[:2], orders=RECORDS[:2])
    assert violations(books) == []
    assert violations(books, sold_out=True) == ["not sold out: remaining is 1"]


def test_after_a_crash_unanswered_requests_and_unseen_orders_are_allowed():
    answers = clean_answers(placed=1, orders={1: {"a"}}, placed_by=Counter({1: 1}), unanswered=9)
    assert "1 placed answers but 3 orders" in violations(clean_books(), answers)
    answers.complete = False
    assert violations(clean_books(), answers) == []
    # ... but an answered order must exist all the same.
    answers.orders = {1: {"x"}}
    assert violations(clean_books(), answers) == ["order x answered to user 1 is missing"]


def test_settle_waits_for_the_books_to_balance_and_returns_the_last_violations():
    loads = iter([clean_books(outbox=1), clean_books(outbox=1), clean_books()])
    books, found = settle(lambda: next(loads), timeout=5)
    assert found == [] and books.outbox == 0

    books, found = settle(lambda: clean_books(outbox=1), timeout=0.2)
    assert found == ["1 hand-offs still in the outbox"]


def test_overdue_counts_only_unpaid_orders_more_than_the_bound_past_their_deadline():
    now = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    orders = [
        {"status": "created", "expires_at": "2026-11-30T11:59:50Z"},  # 10 s late
        {"status": "created", "expires_at": datetime(2026, 11, 30, 11, 59, 56)},  # 4 s: allowed
        {"status": "paid", "expires_at": "2026-11-30T11:00:00Z"},
        {"status": "expired", "expires_at": "2026-11-30T11:00:00Z"},
    ]
    assert overdue(orders, now) == 1
