"""What every service's Sanic app shares: construction, request ids, access log, /health."""

from __future__ import annotations

import gc
import logging
import random
import re
import time

import orjson
from sanic import Request, Sanic
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from common.config import Settings
from common.deadlines import setup_deadlines
from common.errors import problem
from common.headers import add_security_headers, refuse_non_json_body
from common.openapi import Health, json_response, problem_response
from common.telemetry import metrics
from common.telemetry.logs import request_id_var

access_logger = logging.getLogger("seckill.access")

MAX_BODY_BYTES = 1024 * 1024
# Logged for a request whose client closed the connection before the answer (nginx's code).
CLIENT_CLOSED = 499
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def dumps(value: object) -> bytes:
    """orjson, allowing int keys: the OpenAPI document keys its responses by status code."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def new_request_id() -> str:
    """128 random bits in hex. An id needs to be unique, not secret: the process's own
    generator (seeded from the OS once per worker) spares a system call per request."""
    return f"{random.getrandbits(128):032x}"


def new_app(settings: Settings, title: str) -> Sanic:
    """A Sanic app with the shared JSON codec, limits and OpenAPI metadata.

    Logging is the runner's to configure (common/runner.py): it is process-wide, and a
    factory without process-wide side effects can build several apps in one test process.
    """
    app = Sanic(settings.service_name, dumps=dumps, loads=orjson.loads, configure_logging=False)
    app.config.REQUEST_MAX_SIZE = MAX_BODY_BYTES
    app.config.ACCESS_LOG = False  # our own access line below carries ids
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.API_TITLE = title
    app.config.API_VERSION = "1.0.0"
    setup_deadlines(app, settings)  # served with RequestDeadlineProtocol (common/runner.py)
    # Which proxy headers may name the client: none unless configured (client_ip below).
    app.config.PROXIES_COUNT = settings.proxies_count
    app.config.REAL_IP_HEADER = settings.real_ip_header
    app.config.FORWARDED_SECRET = settings.forwarded_secret
    app.ctx.settings = settings
    app.after_server_start(freeze_startup_objects)
    return app


async def freeze_startup_objects(app: Sanic) -> None:
    """Move what the worker made to start (some 100,000 objects: modules' functions, classes,
    dicts), all of which lives as long as it does, out of the garbage collector's sight
    (gc.freeze). Every full collection otherwise walks them all again: in a sale, several
    pauses of 50 to 150 ms per worker (docs/seckill.md, garbage collection). Collected
    first: garbage frozen would never be freed."""
    gc.collect()
    gc.freeze()


def client_ip(request: Request) -> str:
    """The client's address: what a trusted proxy says (Sanic's PROXIES_COUNT, REAL_IP_HEADER,
    FORWARDED_SECRET), else the socket peer. Headers from anyone else are ignored."""
    return request.remote_addr or request.ip


def setup_requests(app: Sanic, settings: Settings) -> None:
    """Request ids in and out, one JSON access line per request, the security headers, JSON
    as the only body type, and the HTTP metrics: one middleware each way for all of it, as
    each middleware Sanic dispatches costs more than most of the work done in them."""
    access_log = settings.access_log

    @app.on_request(priority=100)
    async def request_begins(request: Request) -> None:
        sent = request.headers.get("x-request-id")
        request.ctx.request_id = sent if sent and _REQUEST_ID.match(sent) else new_request_id()
        request.ctx.started = time.perf_counter()
        request_id_var.set(request.ctx.request_id)
        refuse_non_json_body(request)

    @app.on_response(priority=100)
    async def request_ends(request: Request, response: HTTPResponse) -> None:
        add_security_headers(response)
        request_id = getattr(request.ctx, "request_id", None) or new_request_id()
        response.headers["X-Request-ID"] = request_id
        # No start time when no request middleware ran (a request Sanic refused first).
        started = getattr(request.ctx, "started", None)
        seconds = time.perf_counter() - started if started is not None else None
        metrics.request_answered(request, response.status, seconds)
        if access_log:
            status = response.status
            if request.transport.is_closing():
                # The client left before the answer (one that gave up while a worker was still
                # starting): nobody gets Sanic's 500, so log it as nginx does, 499.
                status = CLIENT_CLOSED
            access_logger.info(
                "%s %s %s",
                request.method,
                request.path,
                status,
                extra={
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2) if seconds is not None else 0.0,
                    "request_id": request_id,
                },
            )


def setup_health(app: Sanic) -> None:
    @app.get("/livez", name="livez")
    @openapi.summary("Liveness only: the process answers (no database; the benchmark's ceiling)")
    @openapi.tag("health")
    @json_response(200, Health, "the process answers")
    async def livez(request: Request) -> HTTPResponse:
        """Liveness only: the process answers; no database (the benchmark's ceiling)."""
        return json({"status": "ok"})

    @app.get("/health", name="health")
    @openapi.summary("Liveness and readiness: the service and its database answer")
    @openapi.tag("health")
    @json_response(200, Health, "the service and its database answer (degraded: see redis)")
    @problem_response(503, "unhealthy: the database does not answer")
    async def health(request: Request) -> HTTPResponse:
        """Liveness and readiness: the service answers and its database does too. With
        REDIS_URL, which shared guarantees this worker keeps in Redis and which are per
        process now because Redis does not answer (status degraded, still 200: the
        service serves)."""
        if not await request.app.ctx.db.ping():
            unhealthy = problem(503, "unhealthy", "the database does not answer")
            unhealthy.headers["Retry-After"] = "1"
            return unhealthy
        status = getattr(request.app.ctx, "redis_status", None)
        redis = status.report() if status is not None else None
        if redis is None:
            return json({"status": "ok"})
        return json({"status": "degraded" if redis["local"] else "ok", "redis": redis})
