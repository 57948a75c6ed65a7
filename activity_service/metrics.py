"""activity_service's own metric families (docs/metrics.md); the shared HTTP and MySQL
ones are common/telemetry/metrics.py's. Every label set known here is exported at 0 from
start-up (KNOWN), so a sale's first second shows as an increase."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from common.telemetry.metrics import LATENCY_BUCKETS, TALLY, KnownSeries

BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
# A seckill's answer: created or repeat, or the code of the error it answered. The sale's
# own answers are those the dashboard counts; a request refused before the sale is either
# of the last two.
SALE_OUTCOMES = (
    "created",
    "repeat",
    "sold_out",
    "not_started",
    "ended",
    "rate_limited",
    "challenge_failed",
    "service_unavailable",
)
OUTCOMES = (*SALE_OUTCOMES, "unauthorized", "not_found")
# The names of this service's database work (common/db.py): their statement times and
# retries are exported at 0 from start-up too.
TRANSACTIONS = (
    "insert_activity",
    "update_activity",
    "delete_activity",
    "apply_releases",
    "seckill_batch",
    "seckill_batch_last_units",
    "mark_delivered",
    "add_answer_counts",
    "drop_answer_counts",
)

SECKILL_ANSWERS = Counter("seckill_answers", "Seckill answers, by outcome", ["outcome"])
SECKILL_BATCH_SIZE = Histogram(
    "seckill_batch_size", "Buyers per seckill batch", buckets=BATCH_SIZE_BUCKETS
)
SECKILL_BATCH_SECONDS = Histogram(
    "seckill_batch_duration_seconds", "One seckill batch's transaction", buckets=LATENCY_BUCKETS
)
SECKILL_HANDOFF_SECONDS = Histogram(
    "seckill_handoff_duration_seconds", "Orders handed to order_service: one call",
    buckets=LATENCY_BUCKETS,
)  # fmt: skip
RELAY_DELIVERED = Counter("seckill_relay_delivered_orders", "Orders order_service acknowledged")
RELAY_FAILURES = Counter("seckill_relay_failures", "Hand-offs to order_service that failed")
OUTBOX_BACKLOG = Gauge(
    "seckill_outbox_backlog", "Orders not yet acknowledged by order_service",
    multiprocess_mode="mostrecent",
)  # fmt: skip
OUTBOX_OLDEST = Gauge(
    "seckill_outbox_oldest_age_seconds", "Age of the oldest order not yet acknowledged",
    multiprocess_mode="mostrecent",
)  # fmt: skip
REMAINING_STOCK = Gauge(
    "seckill_remaining_stock", "Units left, per activity on sale now (at most 50)",
    ["activity"], multiprocess_mode="mostrecent",
)  # fmt: skip
DASHBOARD_STREAMS = Gauge(
    "dashboard_streams_open", "Dashboard event streams open", multiprocess_mode="livesum"
)

KNOWN: tuple[KnownSeries, ...] = ((SECKILL_ANSWERS, [(outcome,) for outcome in OUTCOMES]),)


def seckill_batch(size: int, seconds: float) -> None:
    TALLY.observe(SECKILL_BATCH_SIZE, size)
    TALLY.observe(SECKILL_BATCH_SECONDS, seconds)


def handed_off(orders: int, seconds: float) -> None:
    TALLY.observe(SECKILL_HANDOFF_SECONDS, seconds)
    TALLY.count(RELAY_DELIVERED, (), orders)
