"""The seckill's decisions without MySQL: who gets an order, who is refused, what memory says."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from activity_service.errors import ActivityNotFound, Ended, NotStarted, SoldOut
from activity_service.seckill import (
    CLOSED_TRUST_SECONDS,
    OPEN,
    STALE,
    ActivityState,
    Closed,
    Outcome,
    Queued,
    Remembered,
    grant,
    new_orders,
    present_order,
    split_answers,
    triage,
)

NOW = datetime(2026, 11, 30, 12, 0, 0)
ACTIVITY_ID = 7


def activity(stock: int = 10, remaining: int = 10, start_in: float = -60, end_in: float = 3600):
    return {
        "id": ACTIVITY_ID,
        "price": Decimal("9.50"),
        "stock": stock,
        "remaining": remaining,
        "starts_at": NOW + timedelta(seconds=start_in),
        "ends_at": NOW + timedelta(seconds=end_in),
        "pay_within_seconds": 900,
        "released": 0,
    }


def record(user_id: int, order_no: str | None = None) -> dict:
    return {
        "activity_id": ACTIVITY_ID,
        "user_id": user_id,
        "order_no": order_no or f"2026113012000000{user_id:013x}",
        "amount": Decimal("9.50"),
        "created_at": NOW - timedelta(seconds=5),
        "expires_at": NOW + timedelta(seconds=895),
    }


# triage: what the read alone decides


def test_holders_get_their_order_back_and_are_not_new_buyers():
    held = [record(2), record(4)]
    sale = triage(ACTIVITY_ID, activity(), held, [1, 2, 3, 4], NOW)

    assert sale.outcomes == {
        2: Outcome(order=present_order(held[0])),
        4: Outcome(order=present_order(held[1])),
    }
    assert sale.winners == [1, 3] and sale.losers == [] and sale.closed is None


def test_the_earliest_newcomers_get_what_stock_is_left_in_arrival_order():
    sale = triage(ACTIVITY_ID, activity(remaining=2), [record(9)], [5, 9, 3, 8, 1], NOW)

    assert sale.winners == [5, 3]
    assert sale.losers == [8, 1]
    assert set(sale.outcomes) == {9}  # the losers learn their fate only after the write


def test_lookers_never_buy_they_get_their_order_a_refusal_or_open():
    """A look (a try whose challenge failed) is told what the read says, and takes no stock."""
    held = [record(2)]
    sale = triage(ACTIVITY_ID, activity(remaining=1), held, [1, 2, 3, 4], NOW, frozenset({1, 2}))

    assert sale.outcomes == {2: Outcome(order=present_order(held[0])), 1: OPEN}
    assert sale.winners == [3] and sale.losers == [4] and sale.lookers == [1]
    closed = triage(ACTIVITY_ID, activity(remaining=0), [], [1, 3], NOW, frozenset({1}))
    assert isinstance(closed.outcomes[1].error, SoldOut) and closed.winners == []
    early = triage(ACTIVITY_ID, activity(start_in=60), [], [1], NOW, frozenset({1}))
    assert isinstance(early.outcomes[1].error, NotStarted)


def test_a_look_in_the_batch_that_sells_the_last_unit_hears_sold_out():
    sale = triage(ACTIVITY_ID, activity(remaining=1), [], [5, 6], NOW, frozenset({6}))
    batch = new_orders(ACTIVITY_ID, activity(), sale.winners, NOW)

    sold = grant(ACTIVITY_ID, activity(), sale, batch.orders, 0, NOW)

    assert sold.outcomes[5].created and isinstance(sold.outcomes[6].error, SoldOut)
    assert sold.closed is not None


def test_holders_get_their_order_even_once_sold_out_and_newcomers_hear_sold_out():
    sale = triage(ACTIVITY_ID, activity(remaining=0), [record(1)], [1, 2, 3], NOW)

    assert sale.outcomes[1].order["user_id"] == 1
    assert isinstance(sale.outcomes[2].error, SoldOut)
    assert isinstance(sale.outcomes[3].error, SoldOut)
    assert sale.outcomes[2].error.code == "sold_out" and "7" in sale.outcomes[2].error.detail
    assert sale.winners == [] and sale.losers == []
    assert sale.closed.sold == 10


@pytest.mark.parametrize(
    ("window", "error", "code"),
    [
        ({"start_in": 30}, NotStarted, "not_started"),
        ({"start_in": -3600, "end_in": 0}, Ended, "ended"),  # ends_at itself is over
        ({"start_in": -3600, "end_in": -1}, Ended, "ended"),
    ],
)
def test_outside_its_window_newcomers_are_refused_and_holders_still_served(window, error, code):
    sale = triage(ACTIVITY_ID, activity(remaining=8, **window), [record(1)], [1, 2], NOW)

    assert sale.outcomes[1].order["user_id"] == 1
    assert isinstance(sale.outcomes[2].error, error) and sale.outcomes[2].error.code == code
    assert sale.winners == [] and sale.losers == []
    assert sale.closed.sold == 2  # stock 10, 8 remaining


def test_a_missing_activity_refuses_everyone_as_not_found():
    sale = triage(ACTIVITY_ID, None, [], [1, 2], NOW)

    assert all(isinstance(sale.outcomes[u].error, ActivityNotFound) for u in (1, 2))
    assert sale.winners == [] and sale.closed.sold == 0
    assert sale.closed.trust_seconds == CLOSED_TRUST_SECONDS


def test_an_open_activity_with_stock_is_not_closed():
    assert triage(ACTIVITY_ID, activity(remaining=1), [], [1], NOW).closed is None


# the trust window of a closed activity


def test_closed_is_trusted_for_half_a_second_at_most():
    assert CLOSED_TRUST_SECONDS == 0.5
    for window in ({"remaining": 0}, {"end_in": -5}, {"start_in": 3600}):
        closed = triage(ACTIVITY_ID, activity(**window), [], [1], NOW).closed
        assert closed.trust_seconds == 0.5, window


def test_not_started_is_never_trusted_past_the_start():
    closed = triage(ACTIVITY_ID, activity(start_in=0.25), [], [1], NOW).closed
    assert closed.trust_seconds == pytest.approx(0.25)


def test_sold_out_is_never_trusted_past_the_end():
    # From the end on, newcomers must hear `ended`, not `sold_out`.
    closed = triage(ACTIVITY_ID, activity(remaining=0, end_in=0.4), [], [1], NOW).closed
    assert isinstance(closed.rejection, SoldOut)
    assert closed.trust_seconds == pytest.approx(0.4)


def test_memory_answers_newcomers_only_while_the_closed_state_is_trusted():
    state = ActivityState(confirmed_until=time.monotonic() + CLOSED_TRUST_SECONDS)
    state.rejection = SoldOut(ACTIVITY_ID)
    state.closed_until = time.monotonic() + CLOSED_TRUST_SECONDS
    assert isinstance(state.answer(5).error, SoldOut)

    state.closed_until = time.monotonic() - 0.001  # the trust has run out: ask MySQL again
    assert state.answer(5) is None


def test_memory_answers_holders_whether_or_not_the_activity_is_closed():
    state = ActivityState(confirmed_until=time.monotonic() + CLOSED_TRUST_SECONDS)
    order = present_order(record(3))
    state.holders[3] = order
    assert state.answer(3) == Outcome(order=order)  # 200, not a new order
    assert state.answer(4) is None  # open, and a newcomer: only MySQL can tell

    state.rejection, state.closed_until = Ended(ACTIVITY_ID), time.monotonic() + 1
    assert state.answer(3) == Outcome(order=order)
    assert isinstance(state.answer(4).error, Ended)


def test_memory_answers_nobody_once_the_trust_since_mysql_confirmed_it_has_run_out():
    state = ActivityState(confirmed_until=time.monotonic() - 0.001)
    state.holders[3] = present_order(record(3))
    state.rejection, state.closed_until = SoldOut(ACTIVITY_ID), time.monotonic() + 1
    assert state.answer(3) is None and state.answer(4) is None


def test_a_batch_that_reads_units_given_back_drops_every_remembered_holder_and_the_closing():
    state = ActivityState()
    old = present_order(record(3))
    remembered = state.remember({3: Outcome(order=old)}, 0, 0, time.monotonic())
    assert remembered == Remembered(True, 0) and state.answer(3) == Outcome(order=old)
    state.rejection, state.closed_until = SoldOut(ACTIVITY_ID), time.monotonic() + 1

    expired = present_order(record(4) | {"released_as": "expired"})
    remembered = state.remember({4: Outcome(order=expired)}, 1, 0, time.monotonic())

    # The batch's own read may still close it, at the generation after the forget.
    assert remembered == Remembered(True, state.generation) and state.generation == 1
    assert state.holders == {4: expired} and state.answer(4).order["status"] == "expired"
    assert state.answer(3) is None and state.answer(5) is None  # MySQL tells them now


def test_a_batch_older_than_a_forget_or_a_newer_read_is_not_remembered():
    state = ActivityState()
    state.remember({}, 2, 0, time.monotonic())
    state.forget([3])
    assert state.remember({3: Outcome(order=present_order(record(3)))}, 2, 0, 0.0) is STALE
    assert state.remember({3: Outcome(order=present_order(record(3)))}, 1, 1, 0.0) is STALE
    assert 3 not in state.holders


# grant: the outcomes once the winners' records are stored


def test_the_winners_get_new_orders_and_the_losers_sold_out_once_nothing_is_left():
    sale = triage(ACTIVITY_ID, activity(remaining=2), [record(9)], [5, 9, 3, 8], NOW)
    created = new_orders(ACTIVITY_ID, activity(), sale.winners, NOW).orders

    outcomes, stored, closed, released = grant(ACTIVITY_ID, activity(), sale, created, 0, NOW, 4)

    assert stored == created and released == 4
    assert outcomes[5].created and outcomes[5].order["user_id"] == 5
    assert outcomes[3].created and outcomes[3].order["amount"] == "9.50"
    assert not outcomes[9].created and outcomes[9].order["user_id"] == 9
    assert isinstance(outcomes[8].error, SoldOut) and outcomes[8].order is None
    assert isinstance(closed, Closed) and isinstance(closed.rejection, SoldOut)


def test_stock_left_after_the_batch_keeps_the_activity_open():
    sale = triage(ACTIVITY_ID, activity(remaining=5), [], [1, 2], NOW)
    created = new_orders(ACTIVITY_ID, activity(), sale.winners, NOW).orders

    outcomes, _, closed, _ = grant(ACTIVITY_ID, activity(), sale, created, 3, NOW)

    assert closed is None
    assert [outcomes[u].created for u in (1, 2)] == [True, True]
    assert len({outcomes[u].order["order_no"] for u in (1, 2)}) == 2


# a batch: how many it takes, and one user asking twice


async def queued(user_id: int) -> Queued:
    return Queued(user_id, asyncio.get_running_loop().create_future(), None)


async def test_a_batch_takes_at_most_batch_max_requests_and_leaves_the_rest_queued():
    state = ActivityState()
    requests = [await queued(u) for u in range(1, 8)]
    state.queue.extend(requests)

    assert [r.user_id for r in state.take_batch(3)] == [1, 2, 3]
    assert [r.user_id for r in state.queue] == [4, 5, 6, 7]
    assert [r.user_id for r in state.take_batch(10)] == [4, 5, 6, 7]
    assert not state.queue


async def test_a_batch_answers_from_memory_whoever_it_can_without_counting_them():
    state = ActivityState(confirmed_until=time.monotonic() + CLOSED_TRUST_SECONDS)
    state.holders[2] = present_order(record(2))
    requests = [await queued(u) for u in (1, 2, 3, 4)]
    state.queue.extend(requests)

    batch = state.take_batch(2)

    assert [r.user_id for r in batch] == [1, 3]  # the holder did not take a place
    assert requests[1].future.result() == Outcome(order=state.holders[2])
    assert not requests[0].future.done() and not requests[2].future.done()
    assert [r.user_id for r in state.queue] == [4]


async def test_a_user_asking_twice_in_a_batch_gets_one_new_order_then_the_same_order():
    first, other, again = await queued(10), await queued(11), await queued(10)
    order = present_order(record(10))
    outcomes = {10: Outcome(order=order, created=True), 11: Outcome(error=SoldOut(ACTIVITY_ID))}

    now, new_orders = split_answers([first, other, again], outcomes)

    assert [future for future, _ in new_orders] == [first.future]  # one 201
    assert new_orders[0][1].created
    assert [future for future, _ in now] == [other.future, again.future]
    assert now[1][1] == Outcome(order=order)  # the repeat: same order, 200
    assert isinstance(now[0][1].error, SoldOut)
