"""Orders/s of the seckill's batch SQL alone, on one hot row: `python -m bench.scaling`.

No HTTP and no services: only what every seckill batch sends to MySQL, through
activity_service/repository.py's scripts and common/db.py, against a fresh
database made by activity_service's migrations (under a `sktest_` prefix,
dropped afterwards). One writer runs one batch transaction after another, as
one activity_service worker does with its one batch in flight per activity:
the read of the activity and the batch's holders, then the conditional stock
UPDATE, the records' INSERT and the COMMIT. Several writers
stand for several workers or instances selling the same activity: they queue
on its row lock from the UPDATE to the COMMIT, so what they add is bounded by
how fast the server commits.

Every run sells a fresh activity and checks from the database that the stock
taken equals the records stored (testkit/invariants.py's books). It prints
figures and asserts nothing about speed. MySQL settings come from MYSQL_HOST,
MYSQL_PORT, MYSQL_USER and MYSQL_PASSWORD, as for the services.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from activity_service import models, repository
from activity_service.seckill import new_orders
from common.db import Database, ScriptedTransaction
from common.formats import utcnow
from testkit.invariants import books_from_databases
from testkit.stack import mysql_connect, scratch_database

STOCK = 10_000_000  # the most an activity may hold: no run sells out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--batch-sizes", default="10,50,200", help="orders per batch, comma-separated (10,50,200)"
    )
    parser.add_argument(
        "--writers",
        default="1,2,4",
        help="concurrent batch writers on the one activity, comma-separated (1,2,4)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run (5)")
    args = parser.parse_args(argv)
    args.batch_sizes = [int(n) for n in args.batch_sizes.split(",")]
    args.writers = [int(n) for n in args.writers.split(",")]
    if min(args.batch_sizes) < 1 or min(args.writers) < 1 or args.seconds <= 0:
        parser.error("batch sizes, writers and seconds must be positive")
    return args


@dataclass
class Run:
    batch_size: int
    writers: int
    orders: int
    batches: int
    seconds: float

    @property
    def orders_per_second(self) -> float:
        return self.orders / self.seconds

    @property
    def batch_ms(self) -> float:
        """Mean time one batch transaction took, as its writer saw it."""
        return 1000 * self.seconds * self.writers / max(self.batches, 1)


async def sell_batch(db: Database, activity_id: int, user_ids: list[int]) -> int:
    """One seckill batch transaction for these new buyers; the orders it stored."""

    async def sell(tx: ScriptedTransaction) -> int:
        activity, _ = await tx.begin(repository.activity_and_holders(activity_id, user_ids))
        batch = new_orders(activity_id, activity, user_ids, utcnow())
        left = await tx.commit(repository.place_orders(activity_id, batch))
        if left is None:
            raise RuntimeError("the stock ran out: raise STOCK or shorten the run")
        return len(batch.orders)

    return await db.scripted_transaction(sell, name="seckill_batch")


async def new_activity(db: Database) -> int:
    now = utcnow()
    values = {
        "name": "scaling",
        "product_name": "hot row",
        "price": "1.00",
        "stock": STOCK,
        "starts_at": now - timedelta(minutes=1),
        "ends_at": now + timedelta(days=1),
        "pay_within_seconds": 900,
        "challenge": False,
        "challenge_difficulty": 50_000,
    }
    return await repository.insert_activity(db, values, now)


async def measure(db: Database, batch_size: int, writers: int, seconds: float) -> Run:
    activity_id = await new_activity(db)
    user_ids = itertools.count(1)
    orders = batches = 0
    deadline = time.monotonic() + seconds

    async def writer() -> None:
        nonlocal orders, batches
        while time.monotonic() < deadline:
            batch = [next(user_ids) for _ in range(batch_size)]
            sold = await sell_batch(db, activity_id, batch)
            orders, batches = orders + sold, batches + 1

    started = time.monotonic()
    await asyncio.gather(*(writer() for _ in range(writers)))
    run = Run(batch_size, writers, orders, batches, time.monotonic() - started)
    check_books(db, activity_id, orders)
    return run


def check_books(db: Database, activity_id: int, orders: int, delivered: bool = False) -> None:
    """Stock taken == records stored == orders counted, one record per user; and if
    delivered, no hand-off left undelivered."""

    def query(service: str, sql: str, args: tuple = ()) -> list[dict]:
        if service != "activity_service":
            # No order_service here: it holds nothing, and the records stay undelivered.
            return [{"n": 0}] if sql.startswith("SELECT COUNT(*)") else []
        with mysql_connect(db.settings.database) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    books = books_from_databases(query, activity_id)
    users = {user for _, user in books.records}
    taken = books.stock - books.remaining
    if not taken == len(books.records) == len(users) == orders:
        raise AssertionError(
            f"activity {activity_id}: {taken} taken, {len(books.records)} records, "
            f"{len(users)} users, {orders} orders counted"
        )
    if delivered and books.outbox:
        raise AssertionError(f"{books.outbox} hand-offs not marked delivered")


def durability_settings() -> dict[str, object]:
    """The server settings that decide what a COMMIT costs."""
    with mysql_connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT VERSION() AS version, @@innodb_flush_log_at_trx_commit AS flush_at_commit, "
            "@@sync_binlog AS sync_binlog, @@log_bin AS log_bin"
        )
        return cur.fetchone()


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load}"


async def run_all(args: argparse.Namespace, report: Callable[[str], None] = print) -> list[Run]:
    os.environ.setdefault("DB_POOL_SIZE", str(max(args.writers) + 1))
    report(f"machine: {machine()}")
    report(f"server: {durability_settings()}")
    report(f"{'batch':>6} {'writers':>8} {'orders/s':>10} {'batch ms':>9} {'orders':>8}")
    runs = []
    async with scratch_database("activity_service", models.run_migrations) as db:
        for batch_size in args.batch_sizes:
            for writers in args.writers:
                run = await measure(db, batch_size, writers, args.seconds)
                runs.append(run)
                report(
                    f"{run.batch_size:>6} {run.writers:>8} {run.orders_per_second:>10.0f} "
                    f"{run.batch_ms:>9.1f} {run.orders:>8}"
                )
    report(f"machine after: {machine()}")
    return runs


def main(argv: list[str] | None = None) -> None:
    asyncio.run(run_all(parse_args(argv)))


if __name__ == "__main__":
    main()
