"""order_service HTTP endpoints: parse, call the service, shape the response."""

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from common.auth import current_user, require_service
from common.errors import NotFound
from common.formats import ORDER_NO_PATTERN, is_order_no
from common.openapi import (
    BEARER,
    SERVICE_TOKEN,
    json_body,
    json_response,
    path_parameter,
    problem_response,
    query_parameters,
)
from common.schemas import Order
from common.validation import parse_body, parse_query
from order_service.schemas import Accepted, NewOrders, OrderPage, OrderQuery, OrderStates

bp = Blueprint("orders")
internal = Blueprint("internal_orders")

ORDER_NO_SCHEMA = {"type": "string", "pattern": ORDER_NO_PATTERN}


def checked_order_no(order_no: str) -> str:
    """Only a well-formed number reaches the database; anything else is a 404 that does not
    echo what was sent."""
    if not is_order_no(order_no):
        raise NotFound("no such order")
    return order_no


@bp.get("/orders")
@openapi.summary("List orders, newest first: your own, or anyone's for an admin")
@openapi.tag("orders")
@openapi.secured(BEARER)
@query_parameters(OrderQuery)
@json_response(200, OrderPage, "a page of orders")
@problem_response(401, "unauthorized")
@problem_response(403, "forbidden")
@problem_response(422, "invalid_request")
async def list_orders(request: Request) -> HTTPResponse:
    principal = await current_user(request)
    q = parse_query(request, OrderQuery)
    page = await request.app.ctx.orders.list(
        principal, q.activity_id, q.user_id, q.status, q.limit, q.offset
    )
    return json(page.model_dump(mode="json"))


@bp.get("/orders/<order_no:str>")
@openapi.summary("One order: yours, or any for an admin")
@openapi.tag("orders")
@openapi.secured(BEARER)
@path_parameter("order_no", ORDER_NO_SCHEMA, "the order number a seckill returned")
@json_response(200, Order, "the order")
@problem_response(401, "unauthorized")
@problem_response(404, "not_found (also for someone else's order)")
async def get_order(request: Request, order_no: str) -> HTTPResponse:
    principal = await current_user(request)
    order = await request.app.ctx.orders.get(principal, checked_order_no(order_no))
    return json(order.model_dump(mode="json"))


@bp.post("/orders/<order_no:str>/pay")
@openapi.summary("Pay your order")
@openapi.tag("orders")
@openapi.secured(BEARER)
@path_parameter("order_no", ORDER_NO_SCHEMA, "the order number a seckill returned")
@json_response(200, Order, "the paid order")
@problem_response(401, "unauthorized")
@problem_response(403, "forbidden: only the buyer pays, an admin neither")
@problem_response(404, "not_found")
@problem_response(409, "not_payable: cancelled, expired, or at or past its expires_at")
async def pay_order(request: Request, order_no: str) -> HTTPResponse:
    principal = await current_user(request)
    order = await request.app.ctx.orders.pay(principal, checked_order_no(order_no))
    return json(order.model_dump(mode="json"))


@bp.post("/orders/<order_no:str>/cancel")
@openapi.summary("Cancel an unpaid order (the buyer or an admin); its unit goes back on sale")
@openapi.tag("orders")
@openapi.secured(BEARER)
@path_parameter("order_no", {"type": "string"}, "the order number a seckill returned")
@json_response(200, Order, "the cancelled order")
@problem_response(401, "unauthorized")
@problem_response(404, "not_found (also for someone else's order)")
@problem_response(409, "not_cancellable: paid, expired, or at or past its expires_at")
async def cancel_order(request: Request, order_no: str) -> HTTPResponse:
    principal = await current_user(request)
    order = await request.app.ctx.orders.cancel(principal, checked_order_no(order_no))
    return json(order.model_dump(mode="json"))


@internal.post("/internal/orders")
@openapi.summary("Record orders committed by activity_service's seckill (idempotent)")
@openapi.tag("internal")
@openapi.secured(SERVICE_TOKEN)
@json_body(NewOrders)
@json_response(200, Accepted, "all given orders are stored")
@problem_response(400, "bad_request: the body is missing or not JSON")
@problem_response(403, "forbidden: the service credential is required")
@problem_response(422, "invalid_request")
async def accept_orders(request: Request) -> HTTPResponse:
    require_service(request)
    body = parse_body(request, NewOrders)
    accepted = Accepted(accepted=await request.app.ctx.orders.accept(body.orders))
    return json(accepted.model_dump(mode="json"))


@internal.get("/internal/activities/<activity_id:int>/order-states")
@openapi.summary("How many of an activity's orders are in each state (the sale dashboard's)")
@openapi.tag("internal")
@openapi.secured(SERVICE_TOKEN)
@path_parameter("activity_id", {"type": "integer"}, "the activity's id")
@json_response(200, OrderStates, "the counts; 0 for an activity without orders")
@problem_response(403, "forbidden: the service credential is required")
@problem_response(404, "not_found: the id is not an integer")
async def order_states(request: Request, activity_id: int) -> HTTPResponse:
    require_service(request)
    counts = await request.app.ctx.orders.states(activity_id)
    states = OrderStates(**{state: counts.get(state, 0) for state in OrderStates.model_fields})
    return json(states.model_dump(mode="json"))
