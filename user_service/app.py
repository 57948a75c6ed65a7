"""user_service app factory."""

from types import SimpleNamespace

from sanic import Sanic

from common.auth import TokenVerifier, load_private_key
from common.cors import setup_cors
from common.db import setup_db
from common.discovery import setup_discovery
from common.errors import setup_errors
from common.limits.ratelimit import Limit, parse_limit, setup_limits
from common.openapi import setup_openapi
from common.redis import setup_redis
from common.revocations import revoker, setup_revocations
from common.telemetry.metrics import setup_metrics
from common.telemetry.tracing import setup_tracing
from common.web import new_app, setup_health, setup_requests
from user_service import metrics
from user_service.passwords import HashPool
from user_service.routes import bp
from user_service.service import UserService
from user_service.settings import UserSettings


def create_app(settings: UserSettings | None = None) -> Sanic:
    settings = settings or UserSettings.from_env()
    app = new_app(settings, "seckill user_service")
    setup_errors(app)
    setup_requests(app, settings)
    setup_cors(app, settings)
    setup_metrics(app, settings, known=metrics.KNOWN, transactions=metrics.TRANSACTIONS)
    setup_tracing(app, settings)
    setup_db(app, settings)
    setup_discovery(app, settings)
    setup_redis(app, settings)
    setup_revocations(app)
    setup_limits(app, settings)
    setup_health(app)
    setup_openapi(app)
    app.blueprint(bp)

    private_key = load_private_key(settings.token_private_key)
    app.ctx.private_key = private_key
    app.ctx.tokens = TokenVerifier(private_key.public_key(), max_ttl=settings.token_max_ttl_seconds)
    app.ctx.limits = SimpleNamespace(
        signups=Limit("signups_per_ip", parse_limit(settings.limit_signups_per_ip)),
        logins=Limit("logins_per_ip", parse_limit(settings.limit_logins_per_ip)),
        failures=Limit(
            "login_failures_per_username", parse_limit(settings.limit_login_failures_per_username)
        ),
        refreshes=Limit("refreshes_per_ip", parse_limit(settings.limit_refreshes_per_ip)),
        revocations=Limit("revocations_per_ip", parse_limit(settings.limit_revocations_per_ip)),
    )

    @app.before_server_start
    async def start_users(app: Sanic) -> None:
        pool = HashPool(settings.password_hash_threads, settings.password_hash_queue)
        app.ctx.users = UserService(
            app.ctx.db,
            private_key,
            settings,
            pool,
            app.ctx.limiter,
            app.ctx.limits.failures,
            revoke_access=revoker(app),
        )
        if settings.admin_username and settings.admin_password:
            await app.ctx.users.ensure_admin(settings.admin_username, settings.admin_password)

    @app.after_server_stop
    async def stop_users(app: Sanic) -> None:
        app.ctx.users.pool.close()

    return app
