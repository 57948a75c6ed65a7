"""bench/scaling.py against real MySQL: it sells through the batch SQL and checks its books."""

from __future__ import annotations

import pytest

from bench import scaling


async def test_a_short_run_sells_in_batches_from_concurrent_writers_and_balances(db):
    runs = [await scaling.measure(db, batch_size=10, writers=w, seconds=0.3) for w in (1, 3)]
    for run in runs:
        assert run.orders == 10 * run.batches > 0 and run.orders_per_second > 0


async def test_the_books_check_names_a_count_that_does_not_match(db):
    activity_id = await scaling.new_activity(db)
    await scaling.sell_batch(db, activity_id, [1, 2, 3])
    scaling.check_books(db, activity_id, 3)
    with pytest.raises(AssertionError, match="3 taken, 3 records, 3 users, 4 orders counted"):
        scaling.check_books(db, activity_id, 4)


def test_the_command_line_takes_lists_and_refuses_nonsense():
    args = scaling.parse_args(["--batch-sizes", "10,50", "--writers", "1,3", "--seconds", "2"])
    assert (args.batch_sizes, args.writers, args.seconds) == ([10, 50], [1, 3], 2.0)
    with pytest.raises(SystemExit):
        scaling.parse_args(["--writers", "0"])
