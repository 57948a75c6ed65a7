"""How a failed request shows on its server span."""

from types import SimpleNamespace

from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sanic.exceptions import NotFound
from sanic.response import HTTPResponse

from common.errors import Conflict
from common.telemetry.tracing import TRACE_ID_HEADER, end_server_span, record_error


async def finish(exception: BaseException, status: int):
    """Run a request span through record_error and end_server_span; returns span and response."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("test").start_span("GET /things", kind=SpanKind.SERVER)
    token = context.attach(trace.set_span_in_context(span))
    request = SimpleNamespace(ctx=SimpleNamespace(span=span, span_token=token, request_id="r-1"))
    response = HTTPResponse(status=status)
    await record_error(request, exception)
    await end_server_span(request, response)
    [finished] = exporter.get_finished_spans()
    trace_id = trace.format_trace_id(span.get_span_context().trace_id)
    assert response.headers[TRACE_ID_HEADER] == trace_id
    assert trace.get_current_span() is not span  # detached again
    return finished


async def test_a_server_error_is_recorded():
    span = await finish(RuntimeError("boom"), 500)

    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "RuntimeError"
    assert span.attributes["http.response.status_code"] == 500
    assert [event.name for event in span.events] == ["exception"]


async def test_a_client_error_keeps_its_code_and_is_no_server_error():
    span = await finish(Conflict("taken"), 409)

    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes["seckill.error_code"] == "conflict"
    assert span.attributes["seckill.request_id"] == "r-1"
    assert span.events == ()


async def test_a_framework_client_error_is_no_server_error():
    span = await finish(NotFound("no such route"), 404)

    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in span.attributes
