"""activity_service HTTP endpoints: parse, call the service, shape the response."""

import time

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json
from sanic_ext import openapi

from activity_service import metrics
from activity_service.challenge import ChallengeFailed
from activity_service.dashboard import OUTCOMES
from activity_service.errors import ActivityNotFound
from activity_service.schemas import (
    Activity,
    ActivityCreate,
    ActivityPage,
    ActivityPatch,
    Challenge,
    ChallengeV1,
    PageQuery,
    Releases,
    ReleasesApplied,
)
from activity_service.seckill import Outcome
from common.auth import current_user, require_admin, require_service
from common.errors import AppError, error_response
from common.openapi import (
    BEARER,
    SERVICE_TOKEN,
    empty_response,
    json_body,
    json_response,
    path_parameter,
    problem_response,
    query_parameters,
)
from common.schemas import Order
from common.telemetry.metrics import count
from common.validation import parse_body, parse_query
from common.web import client_ip

bp = Blueprint("activities")
internal = Blueprint("internal_activities")

# Where the seckill takes a solved challenge (docs/api.md).
SOLUTION_HEADER = "X-Altcha"

MAX_ID = 2**63 - 1


def checked_id(activity_id: int) -> int:
    if not 0 < activity_id <= MAX_ID:
        raise ActivityNotFound(activity_id)
    return activity_id


@bp.post("/activities")
@openapi.summary("Create a flash-sale activity")
@openapi.tag("activities")
@openapi.secured(BEARER)
@json_body(ActivityCreate)
@json_response(201, Activity, "the new activity")
@problem_response(400, "bad_request: the body is missing or not JSON")
@problem_response(401, "unauthorized")
@problem_response(403, "forbidden: admins only")
@problem_response(422, "invalid_request")
async def create_activity(request: Request) -> HTTPResponse:
    await require_admin(request)
    body = parse_body(request, ActivityCreate)
    activity = await request.app.ctx.activities.create(body)
    return json(activity.model_dump(mode="json"), status=201)


@bp.get("/activities")
@openapi.summary("List activities, newest first")
@openapi.tag("activities")
@query_parameters(PageQuery)
@json_response(200, ActivityPage, "a page of activities")
@problem_response(422, "invalid_request")
async def list_activities(request: Request) -> HTTPResponse:
    query = parse_query(request, PageQuery)
    page = await request.app.ctx.activities.list(query.limit, query.offset)
    return json(page.model_dump(mode="json"))


@bp.get("/activities/<activity_id:int>")
@openapi.summary("One activity")
@openapi.tag("activities")
@path_parameter("activity_id", {"type": "integer"}, "the activity's id")
@json_response(200, Activity, "the activity")
@problem_response(404, "not_found")
async def get_activity(request: Request, activity_id: int) -> HTTPResponse:
    activity = await request.app.ctx.activities.get(checked_id(activity_id))
    return json(activity.model_dump(mode="json"))


@bp.patch("/activities/<activity_id:int>")
@openapi.summary("Change an activity; stock only before it starts")
@openapi.tag("activities")
@openapi.secured(BEARER)
@path_parameter("activity_id", {"type": "integer"}, "the activity's id")
@json_body(ActivityPatch)
@json_response(200, Activity, "the changed activity")
@problem_response(400, "bad_request: the body is missing or not JSON")
@problem_response(401, "unauthorized")
@problem_response(403, "forbidden: admins only")
@problem_response(404, "not_found")
@problem_response(409, "activity_started, activity_ended or has_orders: the sale rules")
@problem_response(422, "invalid_request")
async def update_activity(request: Request, activity_id: int) -> HTTPResponse:
    await require_admin(request)
    patch = parse_body(request, ActivityPatch)
    activity = await request.app.ctx.activities.update(checked_id(activity_id), patch)
    return json(activity.model_dump(mode="json"))


@bp.delete("/activities/<activity_id:int>")
@openapi.summary("Delete an activity that has no orders")
@openapi.tag("activities")
@openapi.secured(BEARER)
@path_parameter("activity_id", {"type": "integer"}, "the activity's id")
@empty_response(204, "deleted")
@problem_response(401, "unauthorized")
@problem_response(403, "forbidden: admins only")
@problem_response(404, "not_found")
@problem_response(409, "has_orders")
async def delete_activity(request: Request, activity_id: int) -> HTTPResponse:
    await require_admin(request)
    await request.app.ctx.activities.delete(checked_id(activity_id))
    return empty()


async def admit(request: Request, activity_id: int, user_id: int) -> None:
    """What a seckill request must pass before it may queue for stock: the challenge's
    solution checked (pure CPU), the rate limits, then the solution used up."""
    ctx = request.app.ctx
    solved = None
    difficulty = await ctx.challenge_rules.difficulty(activity_id)
    if difficulty:
        solution = request.headers.get(SOLUTION_HEADER)
        solved = ctx.challenges.verify(solution, activity_id, user_id, difficulty)
    await ctx.limiter.hit(ctx.limits.per_user, str(user_id))
    if ctx.limiter.active(ctx.limits.per_ip):  # the address is worked out only to be counted
        await ctx.limiter.hit(ctx.limits.per_ip, client_ip(request))
    if solved is not None:
        await ctx.challenges.claim(*solved)


async def buy_or_look(request: Request, activity_id: int, user_id: int) -> Outcome:
    """A try that could buy passes the gate, then queues to buy. One whose challenge fails
    only looks: the user's order, or the activity's refusal, still answer it (only a try
    that could buy needs a fresh solution: docs/seckill.md, the gate)."""
    seckill = request.app.ctx.seckill
    try:
        await admit(request, activity_id, user_id)
    except ChallengeFailed:
        outcome = await seckill.look(activity_id, user_id)
        if outcome.open:
            raise
        return outcome
    return await seckill.buy(activity_id, user_id)


@bp.get("/activities/<activity_id:int>/challenge")
@openapi.summary("A proof-of-work challenge (ALTCHA) for this user's seckill on this activity")
@openapi.tag("seckill")
@openapi.secured(BEARER)
@path_parameter("activity_id", {"type": "integer"}, "the activity's id")
@json_response(200, Challenge, "solve it, then send the solution with the seckill (X-Altcha)")
@problem_response(401, "unauthorized")
@problem_response(404, "not_found")
@problem_response(429, "rate_limited: too many from this user or address; see Retry-After")
@problem_response(503, "service_unavailable: the service cannot answer yet; try again")
async def challenge(request: Request, activity_id: int) -> HTTPResponse:
    activity, user_id = await challenge_asked(request, activity_id)
    issued = request.app.ctx.challenges.issue(activity.id, user_id, activity.challenge_difficulty)
    return json(issued)


@bp.get("/activities/<activity_id:int>/challenge/v1")
@openapi.summary("The same challenge in ALTCHA's v1 format, for clients that solve only v1")
@openapi.tag("seckill")
@openapi.secured(BEARER)
@path_parameter("activity_id", {"type": "integer"}, "the activity's id")
@json_response(200, ChallengeV1, "solve it, then send the solution with the seckill (X-Altcha)")
@problem_response(401, "unauthorized")
@problem_response(404, "not_found")
@problem_response(429, "rate_limited: too many from this user or address; see Retry-After")
@problem_response(503, "service_unavailable: the service cannot answer yet; try again")
async def challenge_v1(request: Request, activity_id: int) -> HTTPResponse:
    activity, user_id = await challenge_asked(request, activity_id)
    issued = request.app.ctx.challenges.issue_v1(
        activity.id, user_id, activity.challenge_difficulty
    )
    return json(issued)


async def challenge_asked(request: Request, activity_id: int) -> tuple[Activity, int]:
    """Who asks for a challenge, counted by the challenge limits, and for which activity."""
    principal = await current_user(request)
    ctx = request.app.ctx
    await ctx.limiter.hit(ctx.limits.challenges_per_user, str(principal.user_id))
    if ctx.limiter.active(ctx.limits.challenges_per_ip):
        await ctx.limiter.hit(ctx.limits.challenges_per_ip, client_ip(request))
    return await ctx.activities.get(checked_id(activity_id)), principal.user_id


@bp.post("/activities/<activity_id:int>/seckill")
@openapi.summary("Seckill: buy one unit, at most one order per user")
@openapi.tag("seckill")
@openapi.secured(BEARER)
@path_parameter("activity_id", {"type": "integer"}, "the activity's id")
@json_response(201, Order, "the order this call placed")
@json_response(200, Order, "the order you already hold for this activity")
@openapi.parameter(
    SOLUTION_HEADER,
    str,
    "header",
    description="the solved challenge, as the ALTCHA widget's base64 payload: "
    "required when the activity has `challenge` on",
)
@problem_response(401, "unauthorized")
@problem_response(
    403, "challenge_failed: missing, wrong, expired, used or not yours, on a try that could buy"
)
@problem_response(404, "not_found")
@problem_response(409, "sold_out, not_started or ended")
@problem_response(429, "rate_limited: too many tries from this user or address; see Retry-After")
@problem_response(503, "service_unavailable: the seckill may not have been recorded; try again")
async def seckill(request: Request, activity_id: int) -> HTTPResponse:
    try:
        principal = await current_user(request)
        checked_id(activity_id)
        # What memory knows (your order, or sold out) first: it writes nothing, costs least,
        # and is what most requests get after a sell-out (docs/seckill.md, the gate).
        outcome = request.app.ctx.seckill.known(activity_id, principal.user_id)
        if outcome is None:
            outcome = await buy_or_look(request, activity_id, principal.user_id)
    except AppError as exc:
        answered(request, activity_id, exc.code)
        raise
    if outcome.error is not None:
        answered(request, activity_id, outcome.error.code)
        # Returned, not raised: after a sell-out this is the answer most requests get.
        return error_response(outcome.error)
    answered(request, activity_id, "created" if outcome.created else "repeat")
    return json(outcome.order, status=201 if outcome.created else 200)


def answered(request: Request, activity_id: int, outcome: str) -> None:
    """Counted for /metrics and for the sale dashboard (docs/dashboard.md)."""
    count(metrics.SECKILL_ANSWERS, (outcome,))
    if outcome in OUTCOMES:  # a sale's answers: not_found and unauthorized name no sale
        seconds = time.perf_counter() - request.ctx.started
        request.app.ctx.answer_counts.record(activity_id, outcome, seconds)


@internal.post("/internal/releases")
@openapi.summary("Put the units of cancelled or expired orders back on sale (idempotent)")
@openapi.tag("internal")
@openapi.secured(SERVICE_TOKEN)
@json_body(Releases)
@json_response(200, ReleasesApplied, "every given release is applied, each exactly once")
@problem_response(400, "bad_request: the body is missing or not JSON")
@problem_response(403, "forbidden: the service credential is required")
@problem_response(422, "invalid_request")
async def apply_releases(request: Request) -> HTTPResponse:
    require_service(request)
    body = parse_body(request, Releases)
    releases = {release.order_no: release.status for release in body.releases}
    applied = ReleasesApplied(accepted=await request.app.ctx.releases.apply(releases))
    return json(applied.model_dump(mode="json"))
