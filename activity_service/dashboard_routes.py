"""The live sale dashboard's endpoints (docs/dashboard.md): the page, stream tickets, and
the Server-Sent Events stream of one activity."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from pathlib import Path

import orjson
from pydantic import BaseModel, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, file, json
from sanic_ext import openapi

from activity_service import metrics
from activity_service.dashboard import TICKET_SECONDS, new_ticket, ticket_valid
from activity_service.errors import ActivityNotFound
from common.auth import require_admin
from common.errors import Unauthorized
from common.headers import NO_STORE
from common.openapi import (
    BEARER,
    json_response,
    path_parameter,
    problem_response,
    text_response,
)
from common.web import client_ip

logger = logging.getLogger("seckill.dashboard")
dashboard = Blueprint("dashboard")

PAGE = Path(__file__).parent / "dashboard"
KEY_HEADER = "X-Dashboard-Key"
# A stream ends after this long and the page opens the next with a fresh ticket: no
# response outlives Sanic's RESPONSE_TIMEOUT (60 s), and a revoked credential stops it.
STREAM_SECONDS = 50.0
TICK_SECONDS = 1.0


class StreamTicket(BaseModel):
    ticket: str = Field(description="pass as ?ticket= to the event stream; good for a minute")
    expires_in: int = Field(examples=[TICKET_SECONDS])


@dashboard.get("/dashboard")
@openapi.summary("The live sale dashboard (a page; its data needs a stream ticket)")
@openapi.tag("dashboard")
@text_response(200, "text/html", "the page")
async def dashboard_page(request: Request) -> HTTPResponse:
    return await file(PAGE / "index.html", mime_type="text/html; charset=utf-8")


@dashboard.get("/dashboard/dashboard.js")
@openapi.summary("The dashboard page's script (it draws the charts itself: no library, no CDN)")
@openapi.tag("dashboard")
@text_response(200, "text/javascript", "the script")
async def dashboard_script(request: Request) -> HTTPResponse:
    return await file(PAGE / "dashboard.js", mime_type="text/javascript; charset=utf-8")


@dashboard.post("/dashboard/tickets")
@openapi.summary("A short-lived ticket for the dashboard's event stream")
@openapi.tag("dashboard")
@openapi.secured(BEARER)
@openapi.parameter(KEY_HEADER, str, "header", description="DASHBOARD_KEY, instead of a token")
@json_response(200, StreamTicket, "the ticket")
@problem_response(401, "unauthorized: neither an admin token nor the dashboard key")
@problem_response(403, "forbidden: not an admin")
@problem_response(429, "rate_limited: too many wrong keys from this address; see Retry-After")
async def stream_ticket(request: Request) -> HTTPResponse:
    key = request.app.ctx.settings.dashboard_key
    sent = request.headers.get(KEY_HEADER)
    if sent is not None:
        # Wrong keys are counted per address, and past the allowance even the right one
        # is refused until the window ends: a key cannot be guessed thousands a second.
        ctx, address = request.app.ctx, client_ip(request)
        await ctx.limiter.check(ctx.limits.dashboard_key_failures, address)
        if not (key and hmac.compare_digest(sent.encode(), key.encode())):
            await ctx.limiter.count(ctx.limits.dashboard_key_failures, address)
            raise Unauthorized("wrong dashboard key")
    else:
        await require_admin(request)
    ticket = new_ticket(request.app.ctx.dashboard_key)
    return json(
        StreamTicket(ticket=ticket, expires_in=TICKET_SECONDS).model_dump(), headers=NO_STORE
    )


@dashboard.get("/dashboard/activities/<activity_id:int>/events")
@openapi.summary("One activity's sale, a snapshot a second (Server-Sent Events)")
@openapi.tag("dashboard")
@path_parameter("activity_id", {"type": "integer"}, "the activity's id")
@openapi.parameter("ticket", str, "query", description="from POST /dashboard/tickets")
@text_response(200, "text/event-stream", "`data:` lines, one JSON snapshot a second")
@problem_response(401, "unauthorized: no ticket, a wrong one or an expired one")
@problem_response(404, "not_found")
async def sale_events(request: Request, activity_id: int) -> HTTPResponse | None:
    if not ticket_valid(request.app.ctx.dashboard_key, request.args.get("ticket")):
        raise Unauthorized("a stream ticket from POST /dashboard/tickets is required")
    snapshots = request.app.ctx.snapshots
    first = await snapshots.get(activity_id)
    if first["activity"] is None:
        raise ActivityNotFound(activity_id)
    response = await request.respond(
        content_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )
    metrics.DASHBOARD_STREAMS.inc()
    try:
        ends = time.monotonic() + STREAM_SECONDS
        snapshot: dict | None = first
        while True:
            # A comment line when a snapshot failed (MySQL away): the stream goes on.
            event = b": unavailable" if snapshot is None else b"data: " + orjson.dumps(snapshot)
            await response.send(event + b"\n\n")
            if time.monotonic() >= ends:
                break
            await asyncio.sleep(TICK_SECONDS - time.time() % TICK_SECONDS + 0.05)
            try:
                snapshot = await snapshots.get(activity_id)
            except Exception as exc:
                logger.warning("dashboard snapshot of activity %s failed: %r", activity_id, exc)
                snapshot = None
        await response.eof()
    finally:
        # Also when the client leaves: Sanic cancels this task, and nothing is left behind.
        metrics.DASHBOARD_STREAMS.dec()
    return None
