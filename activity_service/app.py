"""activity_service app factory."""

import asyncio
from contextlib import suppress
from functools import partial
from types import SimpleNamespace

from sanic import Sanic

from activity_service import metrics, repository
from activity_service.challenge import ChallengeRules, Challenges, hmac_key
from activity_service.dashboard import AnswerCounts, Snapshots, ticket_key
from activity_service.dashboard_routes import dashboard
from activity_service.probes import probe_sale
from activity_service.relay import OrderRelay
from activity_service.routes import bp, internal
from activity_service.schemas import example_window
from activity_service.seckill import Seckill
from activity_service.service import ActivityService, ReleaseService
from activity_service.settings import ActivitySettings
from activity_service.shop_routes import shop
from common.auth import setup_remote_keys
from common.client import setup_client
from common.db import setup_db
from common.discovery import setup_discovery
from common.errors import setup_errors
from common.limits.ratelimit import Limit, parse_limit, setup_limits
from common.openapi import live_examples, setup_openapi
from common.redis import setup_redis
from common.revocations import setup_revocations
from common.telemetry.metrics import setup_metrics
from common.telemetry.tracing import setup_tracing
from common.web import new_app, setup_health, setup_requests


def create_app(settings: ActivitySettings | None = None) -> Sanic:
    settings = settings or ActivitySettings.from_env()
    app = new_app(settings, "seckill activity_service")
    setup_errors(app)
    setup_requests(app, settings)
    setup_metrics(
        app,
        settings,
        probes=(partial(probe_sale, app),),
        known=metrics.KNOWN,
        transactions=metrics.TRANSACTIONS,
    )
    setup_tracing(app, settings)
    setup_db(app, settings)
    setup_discovery(app, settings)
    setup_client(app, settings, peers=("user_service", "order_service"))
    setup_remote_keys(app)
    setup_redis(app, settings)
    setup_revocations(app)
    setup_limits(app, settings)
    app.ctx.limits = SimpleNamespace(
        per_user=Limit("seckill_per_user", parse_limit(settings.limit_seckill_per_user)),
        per_ip=Limit("seckill_per_ip", parse_limit(settings.limit_seckill_per_ip)),
        challenges_per_user=Limit(
            "challenges_per_user", parse_limit(settings.limit_challenges_per_user)
        ),
        challenges_per_ip=Limit("challenges_per_ip", parse_limit(settings.limit_challenges_per_ip)),
        dashboard_key_failures=Limit(
            "dashboard_key_failures_per_ip",
            parse_limit(settings.limit_dashboard_key_failures_per_ip),
        ),
    )
    setup_health(app)
    setup_openapi(app, internal=True)
    live_examples(app, "ActivityCreate", example_window)
    app.blueprint(bp)
    app.blueprint(internal)
    app.blueprint(dashboard)
    app.blueprint(shop)
    app.ctx.dashboard_key = ticket_key(settings.service_token)

    @app.before_server_start
    async def start_seckill(app: Sanic) -> None:
        relay = OrderRelay(app.ctx.db, app.ctx.peers["order_service"], tracer=app.ctx.tracer)
        app.ctx.relay = relay
        app.ctx.seckill = Seckill(
            app.ctx.db,
            relay.deliver,
            settings.seckill_batch_max,
            settings.seckill_batch_wait_ms,
            tracer=app.ctx.tracer,
        )
        app.ctx.challenges = Challenges(
            hmac_key(settings.service_token),
            settings.challenge_ttl_seconds,
            app.ctx.redis,
            prefix=settings.db_prefix,
            status=app.ctx.redis_status,
        )
        rules = app.ctx.challenge_rules = ChallengeRules(
            lambda activity_id: repository.challenge_rule(app.ctx.db, activity_id)
        )

        def changed(activity_id: int) -> None:
            app.ctx.seckill.forget(activity_id)
            rules.forget(activity_id)

        app.ctx.answer_counts = AnswerCounts(
            app.ctx.db, app.ctx.redis, settings.db_prefix, app.ctx.redis_status
        )
        app.ctx.snapshots = Snapshots(
            app.ctx.db, app.ctx.answer_counts, app.ctx.peers["order_service"]
        )
        app.ctx.activities = ActivityService(app.ctx.db, on_change=changed)
        app.ctx.releases = ReleaseService(app.ctx.db, on_release=app.ctx.seckill.forget)

    @app.after_server_start
    async def start_relay(app: Sanic) -> None:
        # A plain task, stopped below: Sanic warns about every app task it has to cancel.
        app.ctx.relay_loop = asyncio.create_task(app.ctx.relay.run(), name="order_relay")
        app.ctx.counts_loop = asyncio.create_task(
            app.ctx.answer_counts.run(), name="dashboard_counts"
        )

    @app.before_server_stop
    async def finish_handoffs(app: Sanic) -> None:
        await app.ctx.seckill.settle()
        await app.ctx.relay.drain()
        for loop in (app.ctx.relay_loop, app.ctx.counts_loop):
            loop.cancel()
            with suppress(asyncio.CancelledError):
                await loop
        with suppress(Exception):  # the last second's answers, if MySQL or Redis answers
            await app.ctx.answer_counts.flush()

    return app
