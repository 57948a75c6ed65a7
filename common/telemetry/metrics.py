"""Prometheus metrics for every service: `GET /metrics`, every worker counted (docs/metrics.md).

prometheus-client's multiprocess mode keeps each worker's values in files under
PROMETHEUS_MULTIPROC_DIR (the runner sets and empties it before the workers start) and
the worker that answers a scrape sums them. Writing those files costs about 8 µs a
request (measured: a counter, a histogram and an in-flight gauge); the hot path instead
adds to plain dicts in its own process (about 0.3 µs) and a task of each worker hands the
sums to prometheus-client once a second (Tally). Labels are bounded: route templates,
never paths; codes and names from the code, never ids.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager, suppress

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sanic import Request, Sanic
from sanic.response import HTTPResponse, raw
from sanic_ext import openapi

from common.config import Settings
from common.deadlines import requests_in_flight
from common.errors import AppError
from common.openapi import text_response

logger = logging.getLogger("seckill.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PATH = "/metrics"
# The route label of a request that matched no route (404, 405): one value, never the path.
UNMATCHED = "unmatched"
# The method label: the methods a route may answer, and one value for any other the client
# wrote in its request line (a method is any token it likes: never a label of its own).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
FLUSH_SECONDS = 1.0
# Gauges read from the database (backlogs, stock, order states): by the first worker only.
PROBE_SECONDS = 2.0
# 1 ms to 1 s, and two above for the slow tail.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

# HTTP
HTTP_REQUESTS = Counter(
    "http_requests", "Requests answered, by route template, method and status",
    ["route", "method", "status"],
)  # fmt: skip
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds", "Time from a request's head to its answer, by route template",
    ["route"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
HTTP_IN_FLIGHT = Gauge(
    "http_requests_in_flight", "Requests being handled", multiprocess_mode="livesum"
)
# MySQL
DB_POOL_IN_USE = Gauge(
    "db_pool_connections_in_use", "Pool connections lent out", multiprocess_mode="livesum"
)
DB_POOL_SIZE = Gauge(
    "db_pool_connections_max", "The pools' bound (DB_POOL_SIZE per worker)",
    multiprocess_mode="livesum",
)  # fmt: skip
DB_UNAVAILABLE = Gauge(
    "db_unavailable", "1 while the service's database does not answer (probed every 2 s)",
    multiprocess_mode="mostrecent",
)  # fmt: skip
DB_RETRIES = Counter(
    "db_transaction_retries", "Transactions tried again, by name and MySQL error code",
    ["name", "code"],
)  # fmt: skip
DB_LATENCY = Histogram(
    "db_statement_duration_seconds",
    "Named transactions and statements (common/db.py's names), each attempt included",
    ["name"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
# Discovery
PEER_INSTANCES = Gauge(
    "discovery_healthy_instances", "Healthy instances this service knows of, per peer",
    ["peer"], multiprocess_mode="mostrecent",
)  # fmt: skip

# Redis (common/redis.py): a shared guarantee that went per process because Redis is
# configured but does not answer (or answers in a way it cannot use).
REDIS_UNAVAILABLE = Gauge(
    "redis_unavailable",
    "Workers whose shared guarantee is per process now (Redis configured, not answering),"
    " by guarantee", ["guarantee"], multiprocess_mode="livesum",
)  # fmt: skip
REDIS_FALLBACKS = Counter(
    "redis_fallbacks", "Times a worker's shared guarantee went per process, by guarantee",
    ["guarantee"],
)  # fmt: skip
# What a task left behind (a dashboard stream, a relay's hand-off) shows here.
ASYNCIO_TASKS = Gauge(
    "asyncio_tasks", "Tasks of the workers' event loops", multiprocess_mode="livesum"
)

Probe = Callable[[], Awaitable[None]]
# A family and every label set it can take that is known before anything happens: exported at
# 0 from start-up, so Prometheus sees a burst's first increase (docs/metrics.md).
KnownSeries = tuple[Counter | Gauge | Histogram, Iterable[tuple[str, ...]]]
# The MySQL error numbers transactions retry (common/db.py's RETRYABLE, docs/seckill.md).
RETRIED_CODES = ("1020", "1205", "1213")


class Tally:
    """Counts and observations summed in the process, handed to prometheus-client by flush()."""

    def __init__(self) -> None:
        self.enabled = True  # METRICS=off: nothing is kept
        self.counts: dict[tuple[Counter, tuple[str, ...]], float] = {}
        # (histogram, labels) -> [count per bucket..., sum]
        self.observed: dict[tuple[Histogram, tuple[str, ...]], list[float]] = {}

    def count(self, counter: Counter, labels: tuple[str, ...] = (), amount: float = 1) -> None:
        if not self.enabled:
            return
        key = (counter, labels)
        self.counts[key] = self.counts.get(key, 0) + amount

    def observe(self, histogram: Histogram, value: float, labels: tuple[str, ...] = ()) -> None:
        if not self.enabled:
            return
        key = (histogram, labels)
        sums = self.observed.get(key)
        if sums is None:
            sums = self.observed[key] = [0.0] * (len(histogram._upper_bounds) + 1)
        sums[bisect.bisect_left(histogram._upper_bounds, value)] += 1
        sums[-1] += value

    def flush(self) -> None:
        counts, self.counts = self.counts, {}
        observed, self.observed = self.observed, {}
        for (counter, labels), amount in counts.items():
            (counter.labels(*labels) if labels else counter).inc(amount)
        for (histogram, labels), sums in observed.items():
            # What Histogram.observe does one value at a time, a bucket's count at once.
            child = histogram.labels(*labels) if labels else histogram
            for bucket, number in zip(child._buckets, sums[:-1], strict=True):
                if number:
                    bucket.inc(number)
            child._sum.inc(sums[-1])


TALLY = Tally()
count = TALLY.count
observe = TALLY.observe


def redis_fallback(guarantee: str) -> None:
    TALLY.count(REDIS_FALLBACKS, (guarantee,))


@contextmanager
def timed(histogram: Histogram, *labels: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        TALLY.observe(histogram, time.perf_counter() - started, labels)


@contextmanager
def outcome_of(counter: Counter, success: str) -> Iterator[None]:
    """Count success, or the code of the AppError raised (a bounded set), by result."""
    try:
        yield
    except AppError as exc:
        TALLY.count(counter, (exc.code,))
        raise
    TALLY.count(counter, (success,))


def multiprocess_on() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def multiprocess_registry() -> CollectorRegistry:
    """A registry that reads every worker's files (one per scrape, as the client advises)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def exposition() -> bytes:
    """Every worker's metrics in the text format: from the shared files, or this process's."""
    return generate_latest(multiprocess_registry() if multiprocess_on() else REGISTRY)


def is_first_worker() -> bool:
    worker = os.environ.get("SANIC_WORKER_NAME", "")
    return worker == "" or worker.startswith("Sanic-Server-0-")


def route_label(request: Request) -> str:
    route = request.route
    return route.uri if route is not None else UNMATCHED


def request_answered(request: Request, status: int, seconds: float | None) -> None:
    """Called by the one response middleware (common/web.py): no middleware of its own,
    whose dispatch would cost more than the counting. seconds: None when unknown."""
    if not TALLY.enabled:
        return
    route = route_label(request)
    method = request.method if request.method in METHODS else OTHER_METHOD
    TALLY.count(HTTP_REQUESTS, (route, method, status))
    if seconds is not None:
        TALLY.observe(HTTP_LATENCY, seconds, (route,))


def known_series(app: Sanic, transactions: Iterable[str]) -> list[KnownSeries]:
    """The shared families' label sets known at start-up: the app's route templates, and
    the service's named transactions (each retryable MySQL error)."""
    routes = sorted({route.uri for route in app.router.routes} | {UNMATCHED})
    names = sorted(transactions)
    return [
        (HTTP_LATENCY, [(route,) for route in routes]),
        (DB_LATENCY, [(name,) for name in names]),
        (DB_RETRIES, [(name, code) for name in names for code in RETRIED_CODES]),
    ]


def export_at_zero(series: Iterable[KnownSeries]) -> None:
    """Make every label set's series, at 0: in multiprocess mode, an entry in this worker's
    file. Counters without labels exist from their declaration already. A gauge is set to 0,
    not only made: a "mostrecent" gauge's entry counts only once it has a time of its own
    (until its probe's next reading, a worker started later shows 0 for it)."""
    for family, label_sets in series:
        for labels in label_sets:
            child = family.labels(*labels)
            if isinstance(family, Gauge):
                child.set(0)


def setup_metrics(
    app: Sanic,
    settings: Settings,
    probes: tuple[Probe, ...] = (),
    known: Iterable[KnownSeries] = (),
    transactions: Iterable[str] = (),
) -> None:
    """GET /metrics (unless METRICS=off or METRICS_PORT moves it) and a task per worker
    that flushes the tally, sets the pool gauges and runs probes. The HTTP metrics are
    counted by common/web.py's response middleware (request_answered). known: the
    service's own families with their label sets; transactions: the names its database
    work goes by (common/db.py); both exported at 0 from each worker's start."""
    app.ctx.metric_probes = list(probes)
    known, transactions = list(known), list(transactions)
    TALLY.enabled = settings.metrics == "on"
    if not TALLY.enabled:
        return
    if settings.metrics_port is None:
        # strict_slashes: Sanic would serve /metrics/ and /metrics// too, which a proxy
        # that refuses /metrics lets through.
        @app.get(METRICS_PATH, name="metrics", strict_slashes=True)
        @openapi.summary("Prometheus metrics of every worker of this instance (text format)")
        @openapi.tag("health")
        @text_response(200, "text/plain", "the metrics, in Prometheus' text format 0.0.4")
        async def metrics(request: Request) -> HTTPResponse:
            """Prometheus text format; every worker's counts (docs/metrics.md)."""
            flush(request.app)
            return raw(exposition(), content_type=CONTENT_TYPE_LATEST)

    @app.after_server_start
    async def start_flushing(app: Sanic) -> None:
        export_at_zero([*known_series(app, transactions), *known])
        app.ctx.metrics_loop = asyncio.create_task(flush_forever(app), name="metrics")

    @app.before_server_stop
    async def stop_flushing(app: Sanic) -> None:
        app.ctx.metrics_loop.cancel()
        with suppress(asyncio.CancelledError):
            await app.ctx.metrics_loop
        flush(app)

    @app.after_server_stop
    async def leave(app: Sanic) -> None:
        if multiprocess_on():
            # This worker's live gauges stop counting (livesum); its counters stay.
            multiprocess.mark_process_dead(os.getpid())


def flush(app: Sanic) -> None:
    TALLY.flush()
    # Read from the server's connections, not counted per request (common/deadlines.py).
    HTTP_IN_FLIGHT.set(requests_in_flight(app))
    ASYNCIO_TASKS.set(len(asyncio.all_tasks()))
    status = getattr(app.ctx, "redis_status", None)
    if status is not None and status.mode is not None:
        for guarantee in status.guarantees:
            REDIS_UNAVAILABLE.labels(guarantee).set(1 if guarantee in status.local else 0)
    pool = getattr(getattr(app.ctx, "db", None), "pool", None)
    if pool is not None:
        DB_POOL_IN_USE.set(pool.size - pool.freesize)
        DB_POOL_SIZE.set(pool.maxsize)


async def flush_forever(app: Sanic) -> None:
    probing = is_first_worker()
    next_probe = 0.0
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        try:
            flush(app)
            if probing and time.monotonic() >= next_probe:
                next_probe = time.monotonic() + PROBE_SECONDS
                await run_probes(app)
        except Exception as exc:  # a metric is never worth a worker
            logger.warning("metrics: %r", exc)


async def run_probes(app: Sanic) -> None:
    db = getattr(app.ctx, "db", None)
    if db is not None and db.pool is not None:
        DB_UNAVAILABLE.set(0 if await db.ping() else 1)
    resolver = getattr(app.ctx, "resolver", None)
    peers = getattr(app.ctx, "peers", {})
    if resolver is not None:
        for peer in peers:
            PEER_INSTANCES.labels(peer).set(len(resolver.instances(peer)))
    for probe in app.ctx.metric_probes:
        try:
            await asyncio.wait_for(probe(), timeout=PROBE_SECONDS)
        except Exception as exc:  # MySQL away: the next round tries again
            logger.info("metrics probe %s failed: %r", getattr(probe, "__name__", probe), exc)
