"""The library ties: where our code uses a library's private or undocumented parts.

Each is listed in CONTRIBUTING.md ("Ties to libraries' private parts") with the version it was
written against. Each test here checks that the part still exists and behaves as our code uses
it, and fails naming the tie, so that an upgrade that breaks one says which at once.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram
from sanic import Sanic, empty

CONTRIBUTING = "CONTRIBUTING.md, 'Ties to libraries' private parts'"
# What a changed library part raises in these checks.
BREAKS = (AssertionError, AttributeError, ImportError, LookupError, RuntimeError, TypeError)


@contextmanager
def tie(name: str, package: str, written_against: str) -> Iterator[None]:
    """Any failure inside becomes one that names the tie and the versions."""
    try:
        yield
    except BREAKS as exc:
        broken = exc
    else:
        return
    pytest.fail(
        f"library tie broken: {name} ({package} {version(package)} installed, written against "
        f"{written_against}; see {CONTRIBUTING}): {type(broken).__name__}: {broken}",
        pytrace=False,
    )


def test_prometheus_client_histogram_internals_as_the_tally_uses_them():
    """common/telemetry/metrics.py's Tally.observe and flush: a bucket's count at once."""
    with tie("Histogram._upper_bounds, ._buckets, ._sum", "prometheus-client", "0.26.0"):
        registry = CollectorRegistry()
        histogram = Histogram("tie_h", "h", ["route"], buckets=(0.1, 1.0), registry=registry)
        assert histogram._upper_bounds == [0.1, 1.0, float("inf")], histogram._upper_bounds
        child = histogram.labels("r")
        assert len(child._buckets) == len(histogram._upper_bounds)
        # Two observations of 0.5 (the 1.0 bucket) and their sum, written as flush() does.
        child._buckets[1].inc(2)
        child._sum.inc(1.0)
        (family,) = (family for family in registry.collect() if family.name == "tie_h")
        samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
        assert samples[("tie_h_bucket", "0.1")] == 0
        assert samples[("tie_h_bucket", "1.0")] == 2
        assert samples[("tie_h_bucket", "+Inf")] == 2
        assert samples[("tie_h_count", None)] == 2
        assert samples[("tie_h_sum", None)] == 1.0
        unlabelled = Histogram("tie_u", "u", buckets=(1.0,), registry=registry)
        assert len(unlabelled._buckets) == 2 and unlabelled._sum is not None


def test_sanic_protocol_internals_as_the_deadlines_use_them():
    """common/deadlines.py: RequestDeadlineProtocol and requests_in_flight."""
    with tie("HttpProtocol slots _http, _task, connections; Http.stage", "sanic", "25.12.1"):
        from sanic.http.constants import Stage
        from sanic.http.http1 import Http
        from sanic.server.protocols.http_protocol import HttpProtocol

        slots = {slot for cls in HttpProtocol.__mro__ for slot in getattr(cls, "__slots__", ())}
        assert {"_http", "_task", "connections"} <= slots, sorted(slots)
        # The methods the protocol overrides are still what Sanic calls.
        for method in ("connection_made", "data_received", "check_timeouts", "__init__"):
            assert callable(getattr(HttpProtocol, method)), method
        assert list(inspect.signature(HttpProtocol.check_timeouts).parameters) == ["self"]
        assert list(inspect.signature(HttpProtocol.data_received).parameters) == ["self", "data"]
        made = list(inspect.signature(HttpProtocol.connection_made).parameters)
        assert made == ["self", "transport"], made
        # _http is set where a connection starts (the protocol reads it by that name).
        assert "self._http =" in inspect.getsource(HttpProtocol._setup_connection)
        assert {"stage", "exception", "request_body"} <= set(Http.__slots__)
        assert {"IDLE", "REQUEST", "HANDLER", "RESPONSE"} <= set(Stage.__members__)
        # Sanic's own timeouts are what the protocol's deadlines replace.
        from common.deadlines import RequestDeadlineProtocol

        assert RequestDeadlineProtocol.check_timeouts is not HttpProtocol.check_timeouts


def test_sanic_ext_internals_as_the_openapi_setup_uses_them():
    """common/openapi.py: its extensions, the operation store, the builder, Schema.guard, and
    the two routes whose handlers it replaces."""
    from common.openapi import (
        OAUTH2_REDIRECT,
        SPEC_URI,
        JsonSchema,
        _document,
        empty_response,
        setup_openapi,
    )

    with tie(
        "sanic-ext OperationStore, SpecificationBuilder, routes, Schema.guard",
        "sanic-ext",
        "25.12.0",
    ):
        from sanic_ext.extensions.openapi.builders import OperationStore, SpecificationBuilder

        app = Sanic("ties_" + secrets.token_hex(4))

        @app.delete("/thing")
        @empty_response(204, "gone")
        async def thing(request):
            return empty()

        setup_openapi(app)
        # The document and the redirect page are served by our handlers, not sanic-ext's.
        handlers = {route.path: route.handler for route in app.router.routes}
        assert handlers["docs" + SPEC_URI] is _document
        assert handlers["docs" + OAUTH2_REDIRECT].func.__name__ == "_oauth2_redirect"
        # empty_response wrote a response without content into sanic-ext's store.
        assert OperationStore()[thing].responses[204].serialize() == {"description": "gone"}
        document = SpecificationBuilder().build(app).serialize()
        assert {"openapi", "info", "paths"} <= set(document), sorted(document)
        # JsonSchema keeps every keyword: sanic-ext's Schema.guard would drop these.
        schema = {"type": "string", "examples": ["a"], "const": "a", "pattern": "^a$"}
        assert JsonSchema(**schema).serialize() == schema


def test_opentelemetry_stable_http_names_on_client_spans():
    """common/telemetry/tracing.py's client_trace_configs: the private _StabilityMode."""
    with tie(
        "opentelemetry.instrumentation._semconv._StabilityMode.HTTP with "
        "create_trace_config(sem_conv_opt_in_mode=...)",
        "opentelemetry-instrumentation-aiohttp-client",
        "0.66b1",
    ):
        from opentelemetry.instrumentation._semconv import _StabilityMode
        from opentelemetry.instrumentation.aiohttp_client import create_trace_config
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        assert "sem_conv_opt_in_mode" in inspect.signature(create_trace_config).parameters
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        config = create_trace_config(
            tracer_provider=provider, sem_conv_opt_in_mode=_StabilityMode.HTTP
        )
        asyncio.run(one_request(config))
        (span,) = exporter.get_finished_spans()
        names = set(span.attributes)
        assert {"http.request.method", "http.response.status_code", "url.full"} <= names, names
        assert "http.method" not in names and "http.status_code" not in names, names


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def one_request(config: aiohttp.TraceConfig) -> None:
    server = web.Application()
    server.router.add_get("/", ok)
    runner = web.AppRunner(server)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        await web.SockSite(runner, sock).start()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        async with aiohttp.ClientSession(trace_configs=[config]) as session:
            async with session.get(url) as reply:
                assert reply.status == 200
                await reply.text()
    finally:
        await runner.cleanup()
