"""OpenTelemetry tracing, exported over OTLP/HTTP to Jaeger. Off unless an endpoint is set.

When on, every worker has its own tracer provider (created in the worker,
flushed at shutdown) and every request gets a server span that is the
current span while the handler runs, so log lines, SQL spans and calls to
peers hang off it. When off there is no provider and no middleware: what
is left is a `None` check per SQL call and per seckill batch.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import aiohttp
from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation._semconv import _StabilityMode
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.jaeger import JaegerPropagator
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse
from sanic.signals import Event

from common import VERSION
from common.config import Settings
from common.errors import AppError

TRACE_ID_HEADER = "X-Trace-ID"
# Probes would drown the traces that matter.
UNTRACED_PATHS = frozenset({"/health"})
SHUTDOWN_FLUSH_MILLIS = 5000

# Incoming context: W3C traceparent, or Jaeger's uber-trace-id from older
# clients; the later propagator wins, so traceparent does when both are sent.
# Outgoing calls carry traceparent only (the global default propagator).
INCOMING = CompositePropagator([JaegerPropagator(), TraceContextTextMapPropagator()])


def new_tracer_provider(settings: Settings) -> tuple[TracerProvider, BatchSpanProcessor]:
    """Provider for this worker; sampler from OTEL_TRACES_SAMPLER, queue bounds from OTEL_BSP_*."""
    resource = Resource.create(
        {
            SERVICE_NAME: settings.service_name,
            SERVICE_VERSION: VERSION,
            SERVICE_INSTANCE_ID: uuid.uuid4().hex,
            "host.name": socket.gethostname(),
            "process.pid": os.getpid(),
        }
    )
    provider = TracerProvider(resource=resource)
    # The queue is bounded (OTEL_BSP_MAX_QUEUE_SIZE, 2048 by default): while
    # the collector is down, the newest spans push the oldest out.
    processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.traces_url))
    provider.add_span_processor(processor)
    return provider, processor


def setup_tracing(app: Sanic, settings: Settings) -> None:
    """Tracer per worker, server span per request. Call before setup_db and setup_client."""
    app.ctx.tracer = None
    if not settings.traces_url:
        return

    @app.before_server_start
    async def start_tracing(app: Sanic) -> None:
        app.ctx.tracer_provider, app.ctx.span_processor = new_tracer_provider(settings)
        app.ctx.tracer = app.ctx.tracer_provider.get_tracer("seckill", VERSION)

    @app.after_server_stop
    async def stop_tracing(app: Sanic) -> None:
        # Flushes what is queued, bounded: a dead collector must not hold up the stop.
        await asyncio.to_thread(app.ctx.span_processor.shutdown, SHUTDOWN_FLUSH_MILLIS)
        app.ctx.tracer_provider.shutdown()

    # Highest priority: first of the request middleware, last of the response
    # middleware, so the access log line is written inside the span.
    app.on_request(start_server_span, priority=1000)
    app.on_response(end_server_span, priority=1000)
    app.signal(Event.HTTP_LIFECYCLE_EXCEPTION.value)(record_error)


async def start_server_span(request: Request) -> None:
    if request.path in UNTRACED_PATHS:
        return
    parent = INCOMING.extract(request.headers)
    route = request.uri_template
    span = request.app.ctx.tracer.start_span(
        f"{request.method} {route}" if route else request.method,
        context=parent,
        kind=SpanKind.SERVER,
    )
    # The standard samplers decide on ids alone; a request sampled out costs no more.
    if span.is_recording():
        span.set_attributes(http_attributes(request, route))
    request.ctx.span = span
    request.ctx.span_token = context.attach(trace.set_span_in_context(span, parent))


def http_attributes(request: Request, route: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "http.request.method": request.method,
        "url.scheme": request.scheme,
        "url.path": request.path,
        "server.address": request.server_name,
        "server.port": request.server_port,
        "client.address": request.ip,
        "network.protocol.version": request.version,
    }
    if route:
        attributes["http.route"] = route
    if request.query_string:
        attributes["url.query"] = request.query_string
    user_agent = request.headers.get("user-agent")
    if user_agent:
        attributes["user_agent.original"] = user_agent
    return attributes


async def end_server_span(request: Request, response: HTTPResponse) -> None:
    span: Span | None = getattr(request.ctx, "span", None)
    if span is None:
        return
    request.ctx.span = None
    span.set_attribute("http.response.status_code", response.status)
    request_id = getattr(request.ctx, "request_id", None)
    if request_id:
        span.set_attribute("seckill.request_id", request_id)
    if response.status >= 500:
        span.set_status(Status(StatusCode.ERROR))
        span.set_attribute("error.type", getattr(request.ctx, "error_type", str(response.status)))
    response.headers[TRACE_ID_HEADER] = trace.format_trace_id(span.get_span_context().trace_id)
    span.end()
    context.detach(request.ctx.span_token)


async def record_error(request: Request, exception: BaseException) -> None:
    """Client errors are tagged with their code; server errors are recorded on the span."""
    span: Span | None = getattr(request.ctx, "span", None) if request else None
    if span is None:
        return
    if isinstance(exception, AppError):
        span.set_attribute("seckill.error_code", exception.code)
        status = exception.status
    elif isinstance(exception, SanicException):
        status = exception.status_code
    else:
        status = 500
    if status >= 500:
        span.record_exception(exception)
        request.ctx.error_type = type(exception).__qualname__


def client_trace_configs(app: Sanic) -> list[aiohttp.TraceConfig]:
    """A client span per call, with traceparent injected; empty while tracing is off."""
    if getattr(app.ctx, "tracer", None) is None:
        return []
    return [
        create_trace_config(
            tracer_provider=app.ctx.tracer_provider,
            # The stable HTTP attribute names, as on the server spans.
            sem_conv_opt_in_mode=_StabilityMode.HTTP,
        )
    ]


def span(
    tracer: Tracer | None, name: str, attributes: dict[str, Any] | None = None
) -> AbstractContextManager:
    """A current span around a piece of background work; nothing while tracing is off."""
    if tracer is None:
        return nullcontext()
    return tracer.start_as_current_span(name, attributes=attributes)


@contextmanager
def batch_span(
    tracer: Tracer | None, name: str, members: Sequence[Span], attributes: dict[str, Any]
) -> Iterator[None]:
    """Work done for many requests at once: a child of the first, linked both ways to the rest."""
    if tracer is None or not members:
        yield
        return
    first, rest = members[0], members[1:]
    links = [Link(m.get_span_context()) for m in rest if m.get_span_context().is_valid]
    with tracer.start_as_current_span(
        name, context=trace.set_span_in_context(first), links=links, attributes=attributes
    ) as batch:
        here = batch.get_span_context()
        for member in rest:
            if member.is_recording():
                member.add_link(here)
        yield
