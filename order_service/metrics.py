"""order_service's own metric families (docs/metrics.md); the shared HTTP and MySQL ones
are common/telemetry/metrics.py's."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from common.telemetry.metrics import KnownSeries

STATUSES = ("created", "paid", "cancelled", "expired")
# The names of this service's database work (common/db.py), exported at 0 from start-up.
TRANSACTIONS = ("insert_orders", "pay_order", "cancel_order", "expire_orders", "mark_released")

ORDERS = Gauge("orders", "Orders, by status", ["status"], multiprocess_mode="mostrecent")
ORDER_EXPIRATIONS = Counter("order_expirations", "Unpaid orders expired by the sweeper")
EXPIRY_OVERDUE = Gauge(
    "order_expiry_overdue_seconds",
    "How long the oldest unpaid order is past its deadline (0: the sweeper is up to date)",
    multiprocess_mode="mostrecent",
)
RELEASES_PENDING = Gauge(
    "order_releases_pending", "Units given back, not yet acknowledged by activity_service",
    multiprocess_mode="mostrecent",
)  # fmt: skip
RELEASES_OLDEST = Gauge(
    "order_releases_oldest_age_seconds", "Age of the oldest release not yet acknowledged",
    multiprocess_mode="mostrecent",
)  # fmt: skip

KNOWN: tuple[KnownSeries, ...] = ((ORDERS, [(status,) for status in STATUSES]),)
