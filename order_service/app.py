"""order_service app factory."""

import asyncio
from contextlib import suppress
from functools import partial

from sanic import Sanic

from common.auth import setup_remote_keys
from common.client import setup_client
from common.cors import setup_cors
from common.db import setup_db
from common.discovery import setup_discovery
from common.errors import setup_errors
from common.openapi import setup_openapi
from common.redis import setup_redis
from common.revocations import setup_revocations
from common.telemetry.metrics import setup_metrics
from common.telemetry.tracing import setup_tracing
from common.web import new_app, setup_health, setup_requests
from order_service import metrics
from order_service.lifecycle import ReleaseRelay, Sweeper
from order_service.probes import probe_orders
from order_service.routes import bp, internal
from order_service.service import OrderService
from order_service.settings import OrderSettings


def create_app(settings: OrderSettings | None = None) -> Sanic:
    settings = settings or OrderSettings.from_env()
    app = new_app(settings, "seckill order_service")
    setup_errors(app)
    setup_requests(app, settings)
    setup_cors(app, settings)
    setup_metrics(
        app,
        settings,
        probes=(partial(probe_orders, app),),
        known=metrics.KNOWN,
        transactions=metrics.TRANSACTIONS,
    )
    setup_tracing(app, settings)
    setup_db(app, settings)
    setup_discovery(app, settings)
    setup_client(app, settings, peers=("user_service", "activity_service"))
    setup_remote_keys(app)
    setup_redis(app, settings)  # for the token revocation list only
    setup_revocations(app)
    setup_health(app)
    setup_openapi(app, internal=True)
    app.blueprint(bp)
    app.blueprint(internal)

    @app.before_server_start
    async def start_orders(app: Sanic) -> None:
        relay = ReleaseRelay(app.ctx.db, app.ctx.peers["activity_service"])
        app.ctx.release_relay = relay
        app.ctx.orders = OrderService(app.ctx.db, deliver_releases=relay.deliver)
        app.ctx.sweeper = Sweeper(app.ctx.db, relay, settings.order_sweep_interval_seconds)

    @app.after_server_start
    async def start_lifecycle(app: Sanic) -> None:
        # Plain tasks, stopped below: Sanic warns about every app task it has to cancel.
        app.ctx.lifecycle_loops = [
            asyncio.create_task(app.ctx.sweeper.run(), name="order_sweeper"),
            asyncio.create_task(app.ctx.release_relay.run(), name="release_relay"),
        ]

    @app.before_server_stop
    async def stop_lifecycle(app: Sanic) -> None:
        for loop in app.ctx.lifecycle_loops:
            loop.cancel()
        for loop in app.ctx.lifecycle_loops:
            with suppress(asyncio.CancelledError):
                await loop
        await app.ctx.release_relay.drain()

    return app
