"""activity_service's gauges read from its database, by the first worker
(common/telemetry/metrics.py)."""

from sanic import Sanic

from activity_service import metrics, repository

# The remaining-stock gauge's bound: one series per activity on sale now, the newest first.
MAX_ACTIVITIES = 50


async def probe_sale(app: Sanic) -> None:
    backlog = await repository.outbox_backlog(app.ctx.db)
    metrics.OUTBOX_BACKLOG.set(backlog["backlog"])
    metrics.OUTBOX_OLDEST.set((backlog["oldest_us"] or 0) / 1e6)
    for row in await repository.remaining_on_sale(app.ctx.db, MAX_ACTIVITIES):
        metrics.REMAINING_STOCK.labels(str(row["id"])).set(row["remaining"])
