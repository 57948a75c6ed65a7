"""order_service app factory."""

from sanic import Sanic

from common.auth import setup_remote_keys
from common.client import setup_client
from common.db import setup_db
from common.discovery import setup_discovery
from common.errors import setup_errors
from common.openapi import setup_openapi
from common.tracing import setup_tracing
from common.web import new_app, setup_health, setup_requests
from order_service.routes import bp, internal
from order_service.service import OrderService
from order_service.settings import OrderSettings


def create_app(settings: OrderSettings | None = None) -> Sanic:
    settings = settings or OrderSettings.from_env()
    app = new_app(settings, "seckill order_service")
    setup_errors(app)
    setup_requests(app, settings)
    setup_tracing(app, settings)
    setup_db(app, settings)
    setup_discovery(app, settings)
    setup_client(app, settings, peers=("user_service",))
    setup_remote_keys(app)
    setup_health(app)
    setup_openapi(app, internal=True)
    app.blueprint(bp)
    app.blueprint(internal)

    @app.before_server_start
    async def start_orders(app: Sanic) -> None:
        app.ctx.orders = OrderService(app.ctx.db)

    return app
