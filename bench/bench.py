"""The seckill benchmark: `make bench` (BENCH_ARGS="--quick" and others pass options).

It boots its own stack (testkit/stack.py, as the tests do: real processes
on free ports, databases under a unique `sktest_` prefix, dropped afterwards), with
the same number of activity_service workers in every scenario, and drives it
with wrk (bench/bench.lua):

  1. bare: GET /livez on activity_service, a JSON route that does no I/O (the ceiling);
  2. sell-out with group commit: stock S, 1.2 x S users, every user 3 times, shuffled;
  3. the same sell-out with SECKILL_BATCH_MAX=1 (activity_service restarted so);
  4. rejections after the sell-out: users without an order ask again (409 sold_out).

Each round (--rounds, 3) runs 1, then scenarios 2 and 4 in three variants, the variants'
order reversed every other round: with the default settings (rate limits off, metrics on), with
the default limits on (2L/4L: RATE_LIMITS=on, shared through Redis at --redis-url, or per
process when that is empty), and with the metrics off (2M/4M: METRICS=off), for what
each costs. wrk sends every buyer from one address, so the limits-on runs raise
LIMIT_SECKILL_PER_IP to BENCH_PER_IP (still counted on every request, never refusing);
the per-user limit keeps its default. The summary gives each variant's median run and
the median of the rounds' on/off ratios: this machine's speed drifts by more than the
costs measured, so one pair of runs shows little.
--challenge N runs every sale with
the anti-bot challenge on at difficulty N, each buyer's solution solved before the run.

A sell-out run stops each wrk thread 2 s after its first 409, and its req/s
and orders/s cover the sale itself (first request to last 201); --quick
instead sends a fixed number of requests. After each
sell-out the databases are checked with testkit/invariants.py, as the tests
and the Locust run check them: orders == stock, no user twice, remaining 0,
201s == orders, and order_service holding every order once the outbox has drained.

Buyers' tokens are minted with the stack's own signing key for synthetic user
ids (registering tens of thousands of users through scrypt would take far
longer than the benchmark). It prints figures and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from activity_service.challenge import Challenges, hmac_key
from bench import microbench
from bench.loadgen import Run, group_pids, listener_pids, require_wrk, run_wrk
from common.auth import issue_token, load_private_key
from testkit.altcha_solver import solve
from testkit.invariants import Answers, books_from_databases, settle
from testkit.stack import ADMIN, Stack

# The sell-out's variants, each run once a round: (tag, what differs).
VARIANTS = (
    ("", "default settings"),
    ("L", "default rate limits on"),
    ("M", "metrics off"),
)
SYNTHETIC_IDS_FROM = 10_000_000  # far above any id user_service hands out in a bench stack
# The per-address allowance of the limits-on runs: all of wrk's buyers share one address.
BENCH_PER_IP = "100000000/minute"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small numbers and a fixed request count (about a minute)",
    )
    parser.add_argument("--stock", type=int, help="units per sell-out (50000; quick 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="requests per user (3)")
    parser.add_argument("--workers", type=int, default=2, help="activity_service workers (2)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument(
        "--requests", type=int, help="requests in the bare and rejection runs (200000; quick 20000)"
    )
    parser.add_argument("--max-seconds", type=int, default=120, help="time cap per wrk run (120)")
    parser.add_argument(
        "--rounds",
        type=int,
        help="rounds of the three sell-out variants, in alternating order (3; quick 1)",
    )
    parser.add_argument(
        "--default-only",
        action="store_true",
        help="only scenarios 1, 2 and 4 each round (no 2L/2M/4L/4M, no 3): for iterating on "
        "the sell-out's CPU per order",
    )
    parser.add_argument(
        "--no-micro",
        action="store_true",
        help="skip section 0, the batch path alone (python -m bench.microbench)",
    )
    parser.add_argument(
        "--challenge",
        type=int,
        default=0,
        help="the sales ask for an ALTCHA challenge of this difficulty, solved beforehand (0)",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="the Redis of the limits-on runs; empty: per-process limits (redis://127.0.0.1:6379/0)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the databases and the logs afterwards"
    )
    args = parser.parse_args()
    args.stock = args.stock or (1000 if args.quick else 50_000)
    args.requests = args.requests or (20_000 if args.quick else 200_000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path):
        self.args, self.tmp = args, tmp
        self.stack = Stack(tmp)
        self.stack.start_timeout = 120.0  # the benchmark's restarts on a machine kept busy
        self.key = load_private_key((tmp / "token_key.pem").read_text())
        self.next_user = SYNTHETIC_IDS_FROM
        self.tokens: dict[int, str] = {}
        self.files = 0

    # The stack

    def start(self) -> None:
        self.stack.migrate()
        # The MySQL server the stack uses, not every mariadbd on the machine.
        self.mariadbd = listener_pids(int(os.environ.get("MYSQL_PORT", "3306")), "mariadbd")
        self.stack.start("user_service", "order_service")
        self.start_activity_service()
        self.admin = self.post(
            "user_service", "/tokens", {"username": ADMIN[0], "password": ADMIN[1]}
        )["access_token"]

    def limits_on(self) -> dict[str, str]:
        """The activity_service settings of the limits-on runs."""
        return {
            "RATE_LIMITS": "on",
            "REDIS_URL": self.args.redis_url,
            "LIMIT_SECKILL_PER_IP": BENCH_PER_IP,
        }

    def variant_settings(self, tag: str) -> dict[str, str]:
        return {"": {}, "L": self.limits_on(), "M": {"METRICS": "off"}}[tag]

    def start_activity_service(self, **env: str) -> None:
        self.stack.stop("activity_service")
        self.stack.start("activity_service", SECKILL_WORKERS=str(self.args.workers), **env)

    def watch(self) -> dict[str, list[int]]:
        procs = self.stack.procs
        return {
            "activity_service": group_pids(procs["activity_service"].pid),
            "order_service": group_pids(procs["order_service"].pid),
            "mariadbd": self.mariadbd,
        }

    def post(self, service: str, path: str, body: dict, token: str | None = None) -> dict:
        request = urllib.request.Request(
            self.stack.url(service) + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"}
            | ({"Authorization": f"Bearer {token}"} if token else {}),
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def create_activity(self, stock: int) -> int:
        now = time.time()
        window = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + d)) for d in (-60, 3600)]
        guard = {"challenge": True, "challenge_difficulty": self.args.challenge}
        body = (guard if self.args.challenge else {}) | {
            "name": "bench",
            "product_name": "Keyboard",
            "price": "19.90",
            "stock": stock,
            "starts_at": window[0],
            "ends_at": window[1],
        }
        return self.post("activity_service", "/activities", body, self.admin)["id"]

    # Inputs for wrk

    def write(self, lines: list) -> Path:
        self.files += 1
        path = self.tmp / f"bench-{self.files}.txt"
        path.write_text("".join(f"{line}\n" for line in lines))
        return path

    def new_users(self, count: int) -> list[int]:
        ids = list(range(self.next_user, self.next_user + count))
        self.next_user += count
        return ids

    def tokens_for(self, user_ids: list[int], activity_id: int) -> Path:
        """One token per user for the whole run: a user asking again sends the same one.
        With --challenge, each user's line also carries one solved challenge for the sale
        (issued here with the stack's key, as the service would): a repeat resends it and is
        answered from memory, or refused as a replay (403) if it comes before the first ends."""
        for uid in user_ids:
            if uid not in self.tokens:
                self.tokens[uid] = issue_token(self.key, uid, False, 3600)
        if not self.args.challenge:
            return self.write([self.tokens[uid] for uid in user_ids])
        issuer = Challenges(hmac_key(self.stack.service_token), 3600, None)
        lines = []
        for uid in user_ids:
            issued = issuer.issue(activity_id, uid, self.args.challenge)
            lines.append(f"{self.tokens[uid]}\t{solve(issued)}")
        return self.write(lines)

    def wrk(
        self,
        path: str,
        method: str,
        tokens: Path | None,
        order: list[int],
        stop_at_sold_out: bool = False,
    ) -> Run:
        a = self.args
        return run_wrk(
            self.stack.activity_url,
            path,
            method,
            tokens,
            self.write(order),
            a.connections,
            a.threads,
            a.max_seconds,
            stop_at_sold_out,
            self.watch(),
        )

    # Scenarios

    def bare(self) -> Run:
        return self.wrk("/livez", "GET", None, [1] * self.args.requests)

    def sell_out(self) -> tuple[Run, int, list[int], list[str]]:
        stock = self.args.stock
        users = self.new_users(stock * 6 // 5)
        activity_id = self.create_activity(stock)
        order = [i + 1 for i in range(len(users))] * self.args.repeats
        random.Random(stock).shuffle(order)
        run = self.wrk(
            f"/activities/{activity_id}/seckill",
            "POST",
            self.tokens_for(users, activity_id),
            order,
            stop_at_sold_out=not self.args.quick,
        )
        return run, activity_id, users, self.check(activity_id, stock, run)

    def rejections(self, activity_id: int, users: list[int]) -> Run:
        holders = {
            r["user_id"]
            for r in self.stack.query(
                "activity_service",
                "SELECT user_id FROM seckill_records WHERE activity_id = %s",
                (activity_id,),
            )
        }
        losers = [u for u in users if u not in holders][:10_000]
        order = [i % len(losers) + 1 for i in range(self.args.requests)]
        return self.wrk(
            f"/activities/{activity_id}/seckill",
            "POST",
            self.tokens_for(losers, activity_id),
            order,
        )

    # The invariant check (testkit/invariants.py), from the databases

    def check(self, activity_id: int, stock: int, run: Run, timeout: float = 60) -> list[str]:
        # A sale cut by --max-seconds did not sell out, and 201s in flight at the cut went
        # uncounted: then only what the books themselves must show is checked.
        cut = run.seconds >= self.args.max_seconds - 2
        answers = Answers(
            placed=run.created,
            sold_out=run.statuses.get("409", 0),
            server_errors=sum(n for status, n in run.statuses.items() if status.startswith("5")),
            unanswered=run.socket_errors,
            complete=not cut,
        )
        books, found = settle(
            lambda: books_from_databases(self.stack.query, activity_id),
            answers,
            sold_out=not cut,
            timeout=timeout,
        )
        if books.stock != stock:
            found.append(f"stock is {books.stock}, not {stock}")
        if cut and run.socket_errors:
            found.append(f"{run.socket_errors} socket errors")
        sold = len(books.records or ())
        lines = ["FAIL " + text for text in found] or [
            f"ok   {sold} orders of {stock}, one per user, all held by order_service, "
            f"{run.created} 201s, no 5xx or socket errors"
        ]
        if cut and books.remaining:
            lines.append(
                f"     the sale did not end within --max-seconds ({books.remaining} left): "
                "only conservation and uniqueness were checked"
            )
        (batches,) = self.stack.query(
            "activity_service",
            "SELECT COUNT(DISTINCT created_at) AS n FROM seckill_records WHERE activity_id = %s",
            (activity_id,),
        )
        # A batch stamps all its records with one created_at.
        batches = max(batches["n"], 1)
        return lines + [
            f"     {sold / batches:.1f} orders per committed batch on average ({batches} batches)"
        ]


def show(name: str, run: Run) -> None:
    share = ", ".join(f"{k} {v:.0%}" for k, v in run.cpu_share.items())
    print(
        f"\n{name}\n  {run.answered} answered in {run.seconds:.2f}s: {run.rps:,.0f} req/s; "
        f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms\n  statuses {run.statuses}, "
        f"socket errors {run.socket_errors}\n  CPU share of the machine: {share}",
        flush=True,
    )
    if run.created:
        print(
            f"  the sale (first request to last 201): {run.answered_while_selling} answered, "
            f"{run.created} orders in {run.selling_seconds:.2f}s = {run.sale_rps:,.0f} req/s, "
            f"{run.orders_per_second:,.0f} orders/s",
            flush=True,
        )


def main() -> None:
    args = parse_args()
    require_wrk()
    tmp = Path(tempfile.mkdtemp(prefix="seckill-bench-"))
    bench = Bench(args, tmp)
    load = os.getloadavg()
    print(
        f"seckill benchmark: stock {args.stock}, {args.repeats} requests per user, "
        f"activity_service workers {args.workers}, wrk -t{args.threads} -c{args.connections}, "
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print("buyers' tokens are minted with the stack's signing key for synthetic user ids")
    micro = {}
    if not args.no_micro:
        print("\n0. the batch path alone (python -m bench.microbench): no HTTP, real MySQL")
        micro = microbench.run(["--orders", "1000" if args.quick else "5000"], report=indented)
    try:
        bench.start()
        bares = []
        variants = VARIANTS[:1] if args.default_only else VARIANTS
        pairs = {tag: [] for tag, _ in variants}
        for number in range(1, args.rounds + 1):
            # The ceiling, measured again each round: the ratios over it use the median.
            bench.start_activity_service()
            bares.append(bench.bare())
            show(f"1. bare JSON endpoint (GET /livez, no I/O), round {number}", bares[-1])
            # Alternating order: a machine that speeds up or slows down during the run
            # favours no variant, and each round's ratios compare runs minutes apart.
            order = variants if number % 2 else variants[::-1]
            for tag, settings in order:
                # Restarted before each variant, so every one starts from the same state.
                bench.start_activity_service(**bench.variant_settings(tag))
                sold, activity_id, users, checks = bench.sell_out()
                show(
                    f"2{tag}. sell-out, group commit, {settings}, round {number}, "
                    f"activity {activity_id}",
                    sold,
                )
                print("\n".join("  " + c for c in checks))
                rejected = bench.rejections(activity_id, users)
                show(f"4{tag}. rejections after the sell-out, {settings}, round {number}", rejected)
                pairs[tag].append((sold, rejected))
        single = None
        if not args.default_only:
            bench.start_activity_service(SECKILL_BATCH_MAX="1")
            single, activity_id, _, checks = bench.sell_out()
            show(f"3. sell-out, SECKILL_BATCH_MAX=1, activity {activity_id}", single)
            print("\n".join("  " + c for c in checks))
        summary(bares, single, pairs, micro)
    finally:
        bench.stack.stop()
        if args.keep:
            print(f"kept: the databases, and the services' logs in {tmp}")
        else:
            bench.stack.drop_databases()
            shutil.rmtree(tmp, ignore_errors=True)


def indented(line: str) -> None:
    print("  " + line.replace("\n", "\n  "), flush=True)


# What a run is ranked and compared by.
def orders(run: Run) -> float:
    return run.orders_per_second


def rps(run: Run) -> float:
    return run.rps


def cpu(run: Run) -> float:
    return run.cpu_us_per_request()


def median_run(runs: list[Run], key) -> Run:
    """The run whose key is the median (the lower middle one of an even count)."""
    ranked = sorted(runs, key=key)
    return ranked[(len(ranked) - 1) // 2]


def ratios(on: list[Run], off: list[Run], key) -> str:
    """Each round's on/off ratio, and their median: the figure to read."""
    each = [key(a) / max(key(b), 1e-9) for a, b in zip(on, off, strict=True)]
    listed = " ".join(f"{r:.2f}" for r in each)
    return f"{statistics.median(each):.2f} ({listed})"


def cpu_per_order(run: Run, names: tuple[str, ...] = ("activity_service",)) -> float:
    """µs of these processes' CPU (summed) per order the run placed."""
    return 1e6 * sum(run.cpu_seconds.get(n, 0.0) for n in names) / max(run.created, 1)


SYSTEM = ("activity_service", "order_service", "mariadbd")


def cpu_ratios(bares: list[Run], sales: list[Run]) -> None:
    """The sell-out's CPU per order in bare requests (activity_service's CPU per GET /livez of
    the same round): activity_service's own, and the three processes' together."""
    own, system = [], []
    for number, (bare, sale) in enumerate(zip(bares, sales, strict=True), 1):
        unit = bare.cpu_us_per_request()
        own.append(cpu_per_order(sale) / unit)
        system.append(cpu_per_order(sale, SYSTEM) / unit)
        print(
            f"    round {number}: bare {unit:.1f} µs; per order: activity_service "
            f"{cpu_per_order(sale):.0f}, order_service "
            f"{cpu_per_order(sale, ('order_service',)):.0f}, mariadbd "
            f"{cpu_per_order(sale, ('mariadbd',)):.0f} µs; in bare requests: activity_service "
            f"{own[-1]:.2f}, the three {system[-1]:.2f}; p99 {sale.p99_ms:.1f} ms",
            flush=True,
        )
    print(
        f"  CPU per order in bare requests (median of the rounds): activity_service "
        f"{statistics.median(own):.2f}, activity_service + order_service + mariadbd "
        f"{statistics.median(system):.2f}"
    )


def summary(
    bares: list[Run],
    single: Run | None,
    pairs: dict[str, list[tuple[Run, Run]]],
    micro: dict[int, float],
) -> None:
    bare = median_run(bares, rps)
    load = os.getloadavg()
    rounds = len(pairs[""])
    print(
        f"\nsummary (load average now {load[0]:.2f}; bare, sell-outs and rejections: the "
        f"median of {rounds} round{'s' if rounds > 1 else ''})"
    )
    print(
        f"  {'scenario':<36}{'req/s':>10}{'orders/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'wrk CPU':>9}"
        f"{'CPU µs/req':>12}"
    )
    sold = {tag: [s for s, _ in runs] for tag, runs in pairs.items()}
    rejected = {tag: [r for _, r in runs] for tag, runs in pairs.items()}

    variants = [(tag, settings) for tag, settings in VARIANTS if tag in pairs]
    rows = [("1 bare /livez", bare, bare.rps)]
    for tag, settings in variants:
        run = median_run(sold[tag], orders)
        rows.append((f"2{tag} sell-out, {settings}", run, run.sale_rps))
    if single is not None:
        rows.append(("3 sell-out, BATCH_MAX=1", single, single.sale_rps))
    for tag, settings in variants:
        run = median_run(rejected[tag], rps)
        rows.append((f"4{tag} rejections, {settings}", run, run.rps))
    for name, run, shown_rps in rows:
        shown_orders = f"{run.orders_per_second:,.0f}" if run.created else "-"
        print(
            f"  {name:<36}{shown_rps:>10,.0f}{shown_orders:>10}{run.p50_ms:>9.2f}"
            f"{run.p99_ms:>9.2f}{run.cpu_share['wrk']:>9.0%}{run.cpu_us_per_request():>12.1f}"
        )
    print(
        "  (req/s of a sell-out: answered from the first request to the last 201; CPU µs/req: "
        "activity_service's CPU over the whole run per request answered)"
    )
    batched, rejections = median_run(sold[""], orders), median_run(rejected[""], rps)
    two_three = (
        f"2/3 orders/s {batched.orders_per_second / max(single.orders_per_second, 1e-9):.2f}   "
        if single is not None
        else ""
    )
    print(
        f"  2/1 req/s {batched.sale_rps / bare.rps:.2f}   "
        f"2/1 orders/s over req/s {batched.orders_per_second / bare.rps:.2f}   "
        f"{two_three}4/1 req/s {rejections.rps / bare.rps:.2f}"
    )
    per_order = ", ".join(
        f"{name} {1e6 * seconds / max(batched.created, 1):.0f}"
        for name, seconds in batched.cpu_seconds.items()
    )
    print(f"  CPU µs per order in sell-out 2 (whole run), by process: {per_order}")
    cpu_ratios(bares, sold[""])
    if micro:
        cpu_text = "   ".join(f"batch {size}: {us:.1f}" for size, us in micro.items())
        print(f"  the batch path's CPU per order, µs (0.): {cpu_text}")
    if "L" not in pairs:
        return
    print("  on/off, the median of the rounds' ratios (each round's in brackets):")
    print(
        f"    rate limits: sell-out orders/s {ratios(sold['L'], sold[''], orders)}   "
        f"rejections req/s {ratios(rejected['L'], rejected[''], rps)}"
    )
    print(
        f"    metrics: sell-out orders/s {ratios(sold[''], sold['M'], orders)}   "
        f"rejections req/s {ratios(rejected[''], rejected['M'], rps)}"
    )
    print(
        f"    activity_service CPU µs/req, limits: sell-out {ratios(sold['L'], sold[''], cpu)}"
        f"   rejections {ratios(rejected['L'], rejected[''], cpu)}"
    )
    print(
        f"    activity_service CPU µs/req, metrics: sell-out {ratios(sold[''], sold['M'], cpu)}"
        f"   rejections {ratios(rejected[''], rejected['M'], cpu)}   (1.00: no cost)"
    )


if __name__ == "__main__":
    main()
