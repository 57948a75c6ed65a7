"""CPU per order of the seckill's batch path: `python -m bench.microbench`.

No HTTP: the real Seckill (activity_service/seckill.py) sells to batches of
concurrent `buy()` calls, one client task per buyer of a batch awaiting its calls
one after another as a Sanic connection's task does, against a fresh database
made by activity_service's migrations (under a `sktest_` prefix, dropped afterwards), and the real
OrderRelay hands the new orders to an order_service stand-in that encodes the
call's body as the real client does and acknowledges it at once; the relay
then marks them delivered in MySQL. So everything activity_service's Python
does for an order, except parsing its HTTP request and writing the answer, is
measured: the batch's two round trips, the answers, the hand-off and the
delivered mark.

It prints, per batch size, this process's CPU per order (time.process_time:
MySQL's own CPU is not counted) and the wall-clock orders/s. Every run checks
from the database that the stock taken equals the records stored and that
every record was marked delivered. It asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import itertools
import pstats
import statistics
import time
from dataclasses import dataclass

import orjson

from activity_service import models
from activity_service.relay import OrderRelay
from activity_service.seckill import Seckill
from bench.scaling import check_books, machine, new_activity
from common.db import Database
from testkit.stack import scratch_database


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.microbench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--batch-sizes", default="1,10,25,50", help="orders per batch, comma-separated (1,10,25,50)"
    )
    parser.add_argument("--orders", type=int, default=5000, help="orders per run (5000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per batch size (3)")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also profile one run at batch size N with cProfile; print the top 15 by self time",
    )
    args = parser.parse_args(argv)
    args.batch_sizes = [int(n) for n in args.batch_sizes.split(",")]
    if min(args.batch_sizes) < 1 or args.orders < 1 or args.repeats < 1:
        parser.error("batch sizes, orders and repeats must be positive")
    return args


class AcknowledgingOrders:
    """order_service as the relay sees it, answering at once: the body is still encoded."""

    def __init__(self) -> None:
        self.orders = 0

    async def request(self, method: str, path: str, json: object = None, **_: object) -> None:
        self.orders += len(orjson.loads(orjson.dumps(json))["orders"])


@dataclass
class Run:
    batch_size: int
    orders: int
    cpu_seconds: float
    wall_seconds: float
    batches: int

    @property
    def cpu_us_per_order(self) -> float:
        return 1e6 * self.cpu_seconds / self.orders

    @property
    def orders_per_second(self) -> float:
        return self.orders / self.wall_seconds

    @property
    def orders_per_batch(self) -> float:
        return self.orders / max(self.batches, 1)


async def measure(db: Database, batch_size: int, orders: int, profiler=None) -> Run:
    """Sell `orders` new orders in batches of batch_size; CPU and wall time of the whole.

    batch_size clients, each a task of its own that buys for one user after another, as
    Sanic serves a connection: each request's buy() is awaited in its connection's task,
    with no task of its own per request.
    """
    activity_id = await new_activity(db)
    relay = OrderRelay(db, AcknowledgingOrders())
    batches = 0

    def deliver(new_orders: list[dict]) -> asyncio.Future:
        nonlocal batches
        batches += 1  # once per committed batch that sold
        return relay.deliver(new_orders)

    seckill = Seckill(db, deliver, batch_max=batch_size, batch_wait_ms=0)
    user_ids = itertools.count(1)

    async def client(rounds: int) -> None:
        for _ in range(rounds):
            outcome = await seckill.buy(activity_id, next(user_ids))
            if not outcome.created:
                raise RuntimeError(f"a buyer did not get a new order: {outcome}")

    async def sell(rounds: int) -> None:
        await asyncio.gather(*(client(rounds) for _ in range(batch_size)))
        await relay.drain()  # the delivered marks are part of each order's cost

    await sell(3)  # warm the pool's connections and the activity's state
    sold_before, batches = next(user_ids) - 1, 0
    user_ids = itertools.count(sold_before + 1)
    rounds = max(orders // batch_size, 1)
    if profiler is not None:
        profiler.enable()
    cpu, wall = time.process_time(), time.perf_counter()
    await sell(rounds)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if profiler is not None:
        profiler.disable()
    sold = rounds * batch_size
    check_books(db, activity_id, sold_before + sold, delivered=True)
    return Run(batch_size, sold, cpu, wall, batches)


def top_functions(profiler: cProfile.Profile, count: int = 15) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(count)
    return out.getvalue()


async def run_all(args: argparse.Namespace, report=print) -> dict[int, float]:
    """Print the figures; returns the median µs of CPU per order for each batch size."""
    report(f"machine: {machine()}")
    report(
        f"{'batch':>6} {'CPU us/order':>13} {'orders/s':>10} {'orders':>8} {'per batch':>10}"
        "   (median of runs)"
    )
    medians = {}
    async with scratch_database("activity_service", models.run_migrations) as db:
        for batch_size in args.batch_sizes:
            runs = [await measure(db, batch_size, args.orders) for _ in range(args.repeats)]
            cpu = statistics.median(r.cpu_us_per_order for r in runs)
            rate = statistics.median(r.orders_per_second for r in runs)
            each = " ".join(f"{r.cpu_us_per_order:.1f}" for r in runs)
            per_batch = statistics.median(r.orders_per_batch for r in runs)
            report(
                f"{batch_size:>6} {cpu:>13.1f} {rate:>10.0f} {runs[0].orders:>8} "
                f"{per_batch:>10.1f}   ({each})"
            )
            medians[batch_size] = cpu
        if args.profile:
            profiler = cProfile.Profile(time.process_time)  # CPU, not waits
            await measure(db, args.profile, args.orders, profiler)
            report(f"cProfile, batch {args.profile}, top 15 by self time:")
            report(top_functions(profiler))
    report(f"machine after: {machine()}")
    return medians


def run(argv: list[str] | None = None, report=print) -> dict[int, float]:
    """The whole microbenchmark on a loop of its own; the medians of run_all."""
    args = parse_args(argv)
    use_uvloop()
    return asyncio.run(run_all(args, report))


def main(argv: list[str] | None = None) -> None:
    run(argv)


def use_uvloop() -> None:
    """The event loop the services run on (Sanic takes uvloop when it is installed)."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    main()
