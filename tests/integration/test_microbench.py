"""bench/microbench.py against real MySQL: the real Seckill sells in batches of the
size asked for, every order is marked delivered, and the books balance."""

from __future__ import annotations

import pytest

from bench import microbench, scaling


async def test_a_short_run_sells_every_order_in_full_batches_and_marks_them_delivered(db):
    run = await microbench.measure(db, batch_size=5, orders=20)
    assert run.orders == 20 and run.cpu_us_per_order > 0 and run.orders_per_second > 0
    undelivered = await db.fetch_all("SELECT 1 FROM seckill_records WHERE delivered_at IS NULL")
    assert undelivered == []


async def test_the_books_check_names_orders_left_undelivered(db):
    activity_id = await scaling.new_activity(db)
    await scaling.sell_batch(db, activity_id, [1, 2])  # stored, never handed off
    scaling.check_books(db, activity_id, 2)
    with pytest.raises(AssertionError, match="2 hand-offs not marked delivered"):
        scaling.check_books(db, activity_id, 2, delivered=True)


def test_the_command_line_takes_batch_sizes_and_refuses_nonsense():
    args = microbench.parse_args(["--batch-sizes", "1,25", "--orders", "100", "--profile", "25"])
    assert (args.batch_sizes, args.orders, args.profile) == ([1, 25], 100, 25)
    with pytest.raises(SystemExit):
        microbench.parse_args(["--batch-sizes", "0"])
