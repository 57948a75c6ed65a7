"""Group commit against a real MySQL database made by activity_service's own migrations."""

from __future__ import annotations

import asyncio
import dataclasses

import asyncmy
import pytest

from activity_service import repository
from activity_service import seckill as seckill_module
from activity_service.errors import Ended, SoldOut
from activity_service.repository import RECORD_COLUMNS
from activity_service.seckill import Seckill, present_order
from common.db import DictCursor
from common.errors import ServiceUnavailable
from common.formats import utcnow
from testkit.stack import mysql_connect
from tests.support.batch import new_activity, new_seckill, rows


@pytest.mark.parametrize("batch_max", [200, 1], ids=["batched", "one_per_request"])
async def test_holders_newcomers_and_too_little_stock_in_one_batch(db, batch_max):
    seckill, deliveries = new_seckill(db, batch_max)
    activity_id = await new_activity(db, stock=5)
    first = await asyncio.gather(seckill.buy(activity_id, 1), seckill.buy(activity_id, 2))
    assert all(o.created for o in first)
    seckill.batches.clear()
    deliveries.clear()

    # 1 and 2 hold orders; 10..14 are new, but only 3 units are left; 10 asks twice.
    users = [10, 1, 11, 2, 12, 13, 10, 14]
    outcomes = dict(enumerate(await asyncio.gather(*(seckill.buy(activity_id, u) for u in users))))

    assert outcomes[1].order == first[0].order and not outcomes[1].created  # 200, same order
    assert outcomes[3].order == first[1].order and not outcomes[3].created
    assert outcomes[0].order == outcomes[6].order  # 10 asked twice: one order
    winners = {users[i] for i in (0, 2, 4, 5, 6, 7) if outcomes[i].order}
    assert len(winners) == 3
    assert sum(1 for i in (0, 2, 4, 5, 6, 7) if outcomes[i].created) == 3  # one 201 per winner
    for i in (0, 2, 4, 5, 6, 7):
        if users[i] not in winners:
            assert isinstance(outcomes[i].error, SoldOut) and outcomes[i].order is None
    if batch_max > 1:
        # One batch, in arrival order: the earliest newcomers win; holders came from memory.
        assert seckill.batches == [[10, 11, 12, 13, 10, 14]]
        assert winners == {10, 11, 12}
        assert outcomes[0].created and not outcomes[6].created
        assert len(deliveries) == 1  # one hand-off to order_service for the whole batch
    delivered = sorted(o["user_id"] for batch in deliveries for o in batch)
    assert delivered == sorted(winners)

    activity = await rows(db, "SELECT remaining FROM activities WHERE id = %s", activity_id)
    assert activity[0]["remaining"] == 0
    records = await rows(
        db,
        "SELECT user_id, order_no FROM seckill_records WHERE activity_id = %s ORDER BY user_id",
        activity_id,
    )
    assert [r["user_id"] for r in records] == sorted({1, 2} | winners)
    assert {r["order_no"] for r in records} == {
        o.order["order_no"] for o in (*first, *outcomes.values()) if o.order
    }
    # Stored exactly as answered: amounts, times to the microsecond.
    stored = await rows(db, RECORD_COLUMNS + "WHERE activity_id = %s", activity_id)
    answered = {o.order["order_no"]: o.order for o in (*first, *outcomes.values()) if o.order}
    assert {r["order_no"]: present_order(r) for r in stored} == answered
    undelivered = await rows(db, "SELECT order_no FROM seckill_records WHERE delivered_at IS NULL")
    assert {r["order_no"] for r in undelivered} == {r["order_no"] for r in records}

    # Sold out now: holders and everyone else are answered from memory, without a batch.
    await seckill.settle()
    seckill.batches.clear()
    winner, loser = min(winners), min({10, 11, 12, 13, 14} - winners)
    again = await asyncio.gather(seckill.buy(activity_id, winner), seckill.buy(activity_id, loser))
    assert again[0].order["user_id"] == winner and not again[0].created
    assert isinstance(again[1].error, SoldOut)
    assert seckill.batches == []


@pytest.mark.parametrize("page", [500, 2, 1], ids=["one_page", "pages", "one_by_one"])
async def test_a_worker_that_never_saw_the_holders_loads_them_once_sold_out(db, page, monkeypatch):
    monkeypatch.setattr(seckill_module, "HOLDERS_PAGE", page)
    activity_id = await new_activity(db, stock=3)
    seller, _ = new_seckill(db)
    sold = await asyncio.gather(*(seller.buy(activity_id, u) for u in (1, 2, 3)))
    other, _ = new_seckill(db)  # another worker: nothing in memory

    late = await other.buy(activity_id, 4)  # finds it sold out, loads the holders
    assert isinstance(late.error, SoldOut)
    await other.settle()
    other.batches.clear()
    holders = await asyncio.gather(*(other.buy(activity_id, u) for u in (1, 2, 3, 5)))
    assert [h.order for h in holders[:3]] == [s.order for s in sold]
    assert isinstance(holders[3].error, SoldOut)
    assert other.batches == []


async def test_an_ended_activity_still_gives_holders_their_order(db):
    activity_id = await new_activity(db, stock=3)
    seckill, _ = new_seckill(db)
    bought = await seckill.buy(activity_id, 1)
    assert bought.created

    async def end_now(cur):
        await repository.update_activity(cur, activity_id, {"ends_at": utcnow()})

    await db.transaction(end_now)
    seckill.forget(activity_id)  # as the PATCH handler does
    other, _ = new_seckill(db)  # a worker that never saw the sale

    late = await other.buy(activity_id, 2)
    assert isinstance(late.error, Ended)
    await other.settle()
    other.batches.clear()
    holder, newcomer = await asyncio.gather(other.buy(activity_id, 1), other.buy(activity_id, 3))
    assert holder.order == bought.order and not holder.created
    assert isinstance(newcomer.error, Ended)
    assert other.batches == []  # both from memory


async def test_a_failed_batch_fails_only_its_own_requests_and_changes_nothing(db):
    activity_id = await new_activity(db, stock=10)
    seckill, deliveries = new_seckill(db)
    with mysql_connect(db.settings.database) as conn, conn.cursor() as cur:
        # The records' INSERT comes after the stock UPDATE in the same script: the
        # transaction fails part-way through.
        cur.execute(
            "CREATE TRIGGER refuse_records BEFORE INSERT ON seckill_records FOR EACH ROW "
            "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by the test'"
        )
    try:
        failed = await asyncio.gather(*(seckill.buy(activity_id, u) for u in (1, 2, 3)))
    finally:
        with mysql_connect(db.settings.database) as conn, conn.cursor() as cur:
            cur.execute("DROP TRIGGER refuse_records")

    assert all(isinstance(o.error, ServiceUnavailable) for o in failed)
    assert deliveries == []
    activity = await rows(db, "SELECT remaining FROM activities WHERE id = %s", activity_id)
    assert activity[0]["remaining"] == 10
    assert await rows(db, "SELECT * FROM seckill_records") == []

    retried = await seckill.buy(activity_id, 1)  # the next batch is unaffected
    assert retried.created
    activity = await rows(db, "SELECT remaining FROM activities WHERE id = %s", activity_id)
    assert activity[0]["remaining"] == 9


async def test_stock_taken_between_the_read_and_the_update_is_never_oversold(db, monkeypatch):
    """The conditional UPDATE, not the read before it, decides: a batch that finds
    less left than its snapshot said stores nothing and shares out what is really
    left, in a transaction that reads it under the row lock."""
    activity_id = await new_activity(db, stock=5)
    seckill, deliveries = new_seckill(db)
    script_for = repository.activity_and_holders
    reads = []

    def read_then_another_instance_sells(activity_id_, users, lock_stock=False):
        script = script_for(activity_id_, users, lock_stock=lock_stock)

        def read(results):
            activity, holders = script.read(results)
            reads.append((lock_stock, activity["remaining"]))
            if len(reads) == 1:  # after our snapshot, another instance takes 4 of the 5 units
                with mysql_connect(db.settings.database) as conn, conn.cursor() as other:
                    other.execute(
                        "UPDATE activities SET remaining = remaining - 4 WHERE id = %s",
                        (activity_id,),
                    )
                    conn.commit()
            return activity, holders

        return dataclasses.replace(script, read=read)

    monkeypatch.setattr(repository, "activity_and_holders", read_then_another_instance_sells)
    outcomes = await asyncio.gather(*(seckill.buy(activity_id, u) for u in (1, 2, 3)))

    # The snapshot said 5; the share-out read again under the row lock, and found 1.
    assert reads == [(False, 5), (True, 1)]
    assert outcomes[0].created and outcomes[0].order["user_id"] == 1  # the earliest request
    assert all(isinstance(o.error, SoldOut) for o in outcomes[1:])
    activity = await rows(db, "SELECT remaining FROM activities WHERE id = %s", activity_id)
    assert activity[0]["remaining"] == 0
    records = await rows(db, "SELECT user_id, order_no FROM seckill_records")
    assert [r["user_id"] for r in records] == [1]
    undelivered = await rows(db, "SELECT order_no FROM seckill_records WHERE delivered_at IS NULL")
    assert [r["order_no"] for r in undelivered] == [records[0]["order_no"]]
    assert [[o["user_id"] for o in batch] for batch in deliveries] == [[1]]


async def test_new_orders_are_answered_once_order_service_holds_them_or_after_the_wait(db):
    activity_id = await new_activity(db, stock=10)
    acknowledgements: list[asyncio.Future] = []

    def deliver(orders: list[dict]) -> asyncio.Future:
        acknowledgements.append(asyncio.get_running_loop().create_future())
        return acknowledgements[-1]

    seckill = Seckill(db, deliver, batch_max=200, batch_wait_ms=0, handoff_wait=0.5)
    first = asyncio.ensure_future(seckill.buy(activity_id, 1))
    await asyncio.sleep(0.2)
    assert len(acknowledgements) == 1 and not first.done()  # committed, not yet delivered
    acknowledgements[0].set_result(None)  # order_service holds it now
    assert (await asyncio.wait_for(first, timeout=0.1)).created

    again = await asyncio.wait_for(seckill.buy(activity_id, 1), timeout=0.1)
    assert again.order == first.result().order and not again.created  # a holder: at once

    started = asyncio.get_running_loop().time()
    late = await seckill.buy(activity_id, 2)  # order_service never answers this hand-off
    waited = asyncio.get_running_loop().time() - started
    assert late.created and 0.4 < waited < 2, waited


async def test_while_stock_lasts_a_batch_is_two_round_trips(db, monkeypatch):
    """START TRANSACTION with the read, then one script that ends in COMMIT: the hot
    row is never locked across a round trip. A closed activity costs the same two."""
    activity_id = await new_activity(db, stock=4)
    seckill, _ = new_seckill(db)
    sent: list[str] = []
    execute = DictCursor.execute

    async def recording_execute(cur, query, args=None):
        sent.append(query)
        return await execute(cur, query, args)

    for name in ("begin", "commit", "rollback"):
        original = getattr(asyncmy.Connection, name)
        monkeypatch.setattr(
            asyncmy.Connection,
            name,
            lambda conn, _name=name, _original=original: sent.append(_name) or _original(conn),
        )
    monkeypatch.setattr(DictCursor, "execute", recording_execute)

    bought = await asyncio.gather(*(seckill.buy(activity_id, u) for u in (1, 2, 3)))
    assert all(o.created for o in bought)
    assert len(sent) == 2, sent
    assert sent[0].startswith("START TRANSACTION;")
    assert sent[1].startswith("UPDATE activities SET remaining") and sent[1].endswith("COMMIT")

    sent.clear()
    late = await asyncio.gather(*(seckill.buy(activity_id, u) for u in (4, 5)))
    assert late[0].created and isinstance(late[1].error, SoldOut)
    # Short of stock: nothing stored, ROLLBACK; then the share-out's two round trips.
    assert [q.split(None, 1)[0] for q in sent] == ["START", "ROLLBACK", "START", "UPDATE"]
    assert "FOR UPDATE" in sent[2] and sent[3].endswith("COMMIT")

    await seckill.settle()
    sent.clear()
    other, _ = new_seckill(db)  # a worker that has not seen it sold out
    refused = await other.buy(activity_id, 6)
    assert isinstance(refused.error, SoldOut)
    assert [q.split(None, 1)[0] for q in sent[:2]] == ["START", "COMMIT"], sent


async def test_a_batch_is_one_json_parameter_read_with_json_table_whatever_its_size(db):
    """The read and the INSERT carry the batch as one JSON string, in JSON_TABLE's syntax
    that MariaDB (10.6+) and MySQL (8.0.4+) share: an alias, and a type and PATH per column."""
    activity_id = await new_activity(db, stock=100)
    seckill, _ = new_seckill(db)
    held = await seckill.buy(activity_id, 7)
    activity = await repository.get_activity(db, activity_id)

    for size in (1, 60):
        users = list(range(1000 * size, 1000 * size + size))
        read = repository.activity_and_holders(activity_id, [7, *users])
        batch = seckill_module.new_orders(activity_id, activity, users, utcnow())
        write = repository.place_orders(activity_id, batch)
        assert [len(params) for _, params in read.statements] == [2]
        assert [len(params) for _, params in write.statements] == [3, 0, 5]

        async def sell(tx, read=read, write=write):
            found = await tx.begin(read)
            return found, await tx.commit(write)

        (found, holders), left = await db.scripted_transaction(sell)
        assert found["remaining"] == activity["remaining"]
        assert [present_order(h) for h in holders] == [held.order]  # 7 holds; the rest do not
        assert left == activity["remaining"] - size
        activity["remaining"] = left
        stored = await rows(
            db, RECORD_COLUMNS + "WHERE activity_id = %s AND user_id >= %s", activity_id, users[0]
        )
        assert sorted((present_order(r) for r in stored), key=lambda o: o["user_id"]) == (
            batch.orders
        )
