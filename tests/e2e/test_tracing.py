"""Traces reach an OTLP receiver: one trace per seckill across services, continued from callers."""

import asyncio
import secrets

import aiohttp
import orjson
import pytest

from tests.support.doubles.otlp import OtlpReceiverDouble, ReceivedSpan
from tests.support.factories import Api
from tests.support.stacks import make_stack

SECKILL_ROUTE = "POST /activities/<activity_id:int>/seckill"
SERVICES_IN_A_SECKILL = ("activity_service", "order_service")


@pytest.fixture(scope="module")
def receiver():
    receiver = OtlpReceiverDouble().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def traced_stack(tmp_path_factory, receiver):
    stack = make_stack(
        tmp_path_factory,
        "traced",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_EXPORTER_OTLP_TIMEOUT="2",
        ACCESS_LOG="true",
    )
    yield stack
    stack.stop()
    stack.drop_databases()


@pytest.fixture
async def traced(traced_stack):
    async with aiohttp.ClientSession() as session:
        yield Api(traced_stack, session)


def one(spans: list[ReceivedSpan], **match) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s.service, s.kind, s.name) for s in spans])
    return found[0]


def ancestry(span: ReceivedSpan, spans: list[ReceivedSpan]) -> list[str]:
    """The span ids above span, nearest first, as far as the received spans go."""
    by_id = {s.span_id: s for s in spans}
    chain, parent = [], span.parent_span_id
    while parent is not None:
        chain.append(parent)
        parent = by_id[parent].parent_span_id if parent in by_id else None
    return chain


def served_by(service: str):
    """Wait condition: the service's server span is in (it ends after its children)."""
    return lambda spans: any(s.service == service and s.kind == "SERVER" for s in spans)


def sql(spans: list[ReceivedSpan], service: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.service == service and "db.statement" in s.attributes]


async def test_one_seckill_is_one_trace_across_services(traced, receiver):
    activity = await traced.create_activity(stock=5)
    buyer = await traced.new_user()

    reply = await traced.seckill(activity["id"], buyer.token)

    assert reply.status == 201, reply
    trace_id = reply.headers["X-Trace-ID"]
    spans = await receiver.wait_for(
        trace_id,
        lambda spans: (
            all(served_by(name)(spans) for name in SERVICES_IN_A_SECKILL)
            and any(s.kind == "CLIENT" and s.name == "POST" for s in spans)
        ),
    )
    root = one(spans, service="activity_service", kind="SERVER")
    assert root.name == SECKILL_ROUTE and root.parent_span_id is None
    assert root.attributes["http.route"] == "/activities/<activity_id:int>/seckill"
    assert root.attributes["http.request.method"] == "POST"
    assert root.attributes["http.response.status_code"] == 201

    activity_sql = sql(spans, "activity_service")
    assert activity_sql
    assert all(root.span_id in ancestry(s, spans) for s in activity_sql)
    assert {s.attributes["db.name"] for s in activity_sql} == {f"{traced.stack.prefix}_activity"}

    handoff = one(spans, service="activity_service", kind="CLIENT", name="POST")
    assert handoff.attributes["url.full"].endswith("/internal/orders")
    assert root.span_id in ancestry(handoff, spans)
    order_server = one(spans, service="order_service", kind="SERVER")
    assert order_server.name == "POST /internal/orders"
    assert order_server.parent_span_id == handoff.span_id
    assert order_server.attributes["http.response.status_code"] in (200, 201)

    order_sql = sql(spans, "order_service")
    assert all(order_server.span_id in ancestry(s, spans) for s in order_sql)
    assert {s.attributes["db.name"] for s in order_sql} == {f"{traced.stack.prefix}_order"}

    statements = [s.attributes["db.statement"] for s in activity_sql + order_sql]
    assert all(s.attributes["db.system"] == "mysql" for s in activity_sql + order_sql)
    assert any("%s" in statement for statement in statements)
    # Parameters never leave the service: the new order number is one of them.
    assert not [st for st in statements if reply.body["order_no"] in st]


@pytest.mark.parametrize(
    "header",
    ["traceparent: 00-{trace}-{parent}-01", "uber-trace-id: {trace}:{parent}:0:1"],
    ids=["w3c-traceparent", "jaeger-uber-trace-id"],
)
async def test_an_incoming_trace_context_is_continued(traced, receiver, header):
    activity = await traced.create_activity()
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    name, _, value = header.format(trace=trace_id, parent=parent_id).partition(": ")

    reply = await traced.call(
        "GET", "activity_service", f"/activities/{activity['id']}", headers={name: value}
    )

    assert reply.status == 200, reply
    assert reply.headers["X-Trace-ID"] == trace_id
    spans = await receiver.wait_for(trace_id, served_by("activity_service"))
    server = one(spans, service="activity_service", kind="SERVER")
    assert server.name == "GET /activities/<activity_id:int>"
    assert server.parent_span_id == parent_id
    assert sql(spans, "activity_service")


async def test_a_callers_decision_not_to_sample_is_followed(traced, receiver):
    activity = await traced.create_activity()
    unsampled, sampled = secrets.token_hex(16), secrets.token_hex(16)

    replies = [
        await traced.call(
            "GET",
            "activity_service",
            f"/activities/{activity['id']}",
            headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"},
        )
        for trace_id, flags in ((unsampled, "00"), (sampled, "01"))
    ]

    assert [r.status for r in replies] == [200, 200], replies
    assert replies[0].headers["X-Trace-ID"] == unsampled  # the id still finds the log lines
    # Spans leave a worker in the order they end: once the later request's are in,
    # the earlier one's would be too.
    assert await receiver.wait_for(sampled, served_by("activity_service"))
    assert receiver.in_trace(unsampled) == []


async def test_log_lines_of_a_request_carry_its_trace(traced, receiver):
    activity = await traced.create_activity(stock=5)
    buyer = await traced.new_user()
    trace_id = secrets.token_hex(16)

    reply = await traced.call(
        "POST",
        "activity_service",
        f"/activities/{activity['id']}/seckill",
        token=buyer.token,
        headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
    )

    assert reply.status == 201, reply
    server = one(
        await receiver.wait_for(trace_id, served_by("activity_service")),
        service="activity_service",
        kind="SERVER",
    )
    log = traced.stack.tmp / "activity_service.log"
    lines = []
    for _ in range(100):
        lines = [orjson.loads(x) for x in log.read_text().splitlines() if trace_id in x]
        if lines:
            break
        await asyncio.sleep(0.1)
    access = [x for x in lines if x["logger"] == "seckill.access"]
    assert access and access[0]["trace_id"] == trace_id and access[0]["span_id"] == server.span_id
    assert access[0]["request_id"] == reply.headers["X-Request-ID"]


async def test_errors_are_tagged_on_the_server_span(traced, receiver):
    buyer = await traced.new_user()

    reply = await traced.seckill(2**40, buyer.token)

    assert reply.status == 404 and reply.code == "not_found", reply
    trace_id = reply.headers["X-Trace-ID"]
    spans = await receiver.wait_for(trace_id, served_by("activity_service"))
    server = one(spans, kind="SERVER")
    assert server.name == SECKILL_ROUTE
    assert server.attributes["http.response.status_code"] == 404
    assert server.attributes["seckill.error_code"] == "not_found"
    assert server.status != "ERROR"  # a client error is not the server's


async def test_requests_succeed_while_the_receiver_is_down(traced, receiver):
    activity = await traced.create_activity(stock=10)
    buyers = await traced.new_users(5)

    receiver.stop()
    try:
        replies = [await traced.seckill(activity["id"], b.token) for b in buyers]
        listing = await traced.call("GET", "activity_service", "/activities")
    finally:
        receiver.start()

    assert [r.status for r in replies] == [201] * 5, replies
    assert listing.status == 200, listing
    for _ in range(300):  # the orders reach order_service too, by hand-off or relay
        rows = traced.stack.query(
            "order_service",
            "SELECT COUNT(*) AS n FROM orders WHERE activity_id = %s",
            (activity["id"],),
        )
        if rows[0]["n"] == 5:
            break
        await asyncio.sleep(0.1)
    assert rows[0]["n"] == 5
    # Spans that could not be sent were dropped; once the receiver is back, export resumes.
    again = await traced.call("GET", "activity_service", f"/activities/{activity['id']}")
    spans = await receiver.wait_for(
        again.headers["X-Trace-ID"], served_by("activity_service"), timeout=60
    )
    assert one(spans, kind="SERVER").name == "GET /activities/<activity_id:int>"


async def test_a_relay_resend_is_a_trace_of_its_own(traced, receiver):
    activity = await traced.create_activity(stock=5)
    buyer = await traced.new_user()

    traced.stack.stop("order_service")
    try:
        reply = await traced.seckill(activity["id"], buyer.token)
    finally:
        traced.stack.start("order_service")

    assert reply.status == 201, reply
    order_no = reply.body["order_no"]
    for _ in range(300):  # the relay re-sends the outbox row once order_service is back
        if traced.stack.query(
            "order_service", "SELECT 1 FROM orders WHERE order_no = %s", (order_no,)
        ):
            break
        await asyncio.sleep(0.1)

    def delivered(trace_id: str) -> bool:
        return served_by("order_service")(receiver.in_trace(trace_id))

    for _ in range(300):
        resends = [s for s in receiver.received() if s.name == "order_relay resend"]
        done = [s for s in resends if delivered(s.trace_id)]
        if done:
            break
        await asyncio.sleep(0.1)
    assert done, [(s.trace_id, s.status) for s in resends]
    resend = done[0]
    spans = receiver.in_trace(resend.trace_id)
    assert resend.parent_span_id is None and resend.service == "activity_service"
    order_server = one(spans, service="order_service", kind="SERVER")
    assert resend.span_id in ancestry(order_server, spans)
    # The record is marked delivered in the same trace once order_service has the order.
    assert any(
        s.attributes["db.statement"].startswith("UPDATE seckill_records r JOIN")
        for s in sql(spans, "activity_service")
    )


async def test_no_trace_id_while_tracing_is_off(api):
    reply = await api.call("GET", "activity_service", "/activities")

    assert reply.status == 200
    assert "X-Trace-ID" not in reply.headers
