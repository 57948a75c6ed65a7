"""order_service's gauges read from its database, by the first worker
(common/telemetry/metrics.py)."""

from sanic import Sanic

from order_service import metrics, repository
from order_service.metrics import STATUSES


async def probe_orders(app: Sanic) -> None:
    counts = await repository.count_by_status(app.ctx.db)
    for status in STATUSES:
        metrics.ORDERS.labels(status).set(counts.get(status, 0))
    backlog = await repository.releases_backlog(app.ctx.db)
    metrics.RELEASES_PENDING.set(backlog["backlog"])
    metrics.RELEASES_OLDEST.set((backlog["oldest_us"] or 0) / 1e6)
    overdue = await repository.expiry_overdue(app.ctx.db)
    metrics.EXPIRY_OVERDUE.set((overdue["overdue_us"] or 0) / 1e6)
