"""Which OTEL_* settings turn tracing on, and which incoming trace header wins."""

import pytest
from opentelemetry import trace

from activity_service.settings import ActivitySettings
from common.config import ConfigError
from common.telemetry.tracing import INCOMING

REQUIRED = {"SERVICE_TOKEN": "token"}
TRACE_ID, SPAN_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
OTHER_TRACE_ID, OTHER_SPAN_ID = "a" * 32, "b" * 16


def endpoint(**env: str) -> str | None:
    return ActivitySettings.from_env({**REQUIRED, **env}).traces_url


def test_tracing_is_off_without_an_endpoint():
    assert endpoint() is None
    assert endpoint(OTEL_EXPORTER_OTLP_ENDPOINT="") is None


def test_the_base_endpoint_gets_the_traces_path():
    assert endpoint(OTEL_EXPORTER_OTLP_ENDPOINT="http://jaeger:4318/") == (
        "http://jaeger:4318/v1/traces"
    )


def test_the_traces_endpoint_is_taken_as_given():
    assert (
        endpoint(
            OTEL_EXPORTER_OTLP_ENDPOINT="http://jaeger:4318",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://collector:4318/custom",
        )
        == "http://collector:4318/custom"
    )


def test_sdk_disabled_turns_tracing_off():
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}
    assert endpoint(**on, OTEL_SDK_DISABLED="true") is None


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {"OTEL_TRACES_SAMPLER": "sometimes"},
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
    ],
)
def test_bad_tracing_settings_stop_start_up(env):
    with pytest.raises(ConfigError):
        endpoint(OTEL_EXPORTER_OTLP_ENDPOINT="http://jaeger:4318", **env)


@pytest.mark.parametrize(
    "env, named",
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "_ARG"),
    ],
)
def test_a_bad_tracing_setting_is_named(env, named):
    with pytest.raises(ConfigError, match=named):
        endpoint(**env)


def test_the_traces_protocol_is_the_one_that_counts():
    assert endpoint(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://jaeger:4318",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
    )


def test_the_sampler_argument_matters_only_to_a_ratio_sampler():
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}
    assert endpoint(**on, OTEL_TRACES_SAMPLER="ALWAYS_ON", OTEL_TRACES_SAMPLER_ARG="half")


def test_a_ratio_sampler_is_accepted():
    assert endpoint(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://jaeger:4318",
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0.05",
    )


def parent(headers: dict[str, str]) -> trace.SpanContext:
    return trace.get_current_span(INCOMING.extract(headers)).get_span_context()


def test_traceparent_is_extracted():
    ctx = parent({"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"})
    assert (trace.format_trace_id(ctx.trace_id), trace.format_span_id(ctx.span_id)) == (
        TRACE_ID,
        SPAN_ID,
    )
    assert ctx.is_remote and ctx.trace_flags.sampled


def test_uber_trace_id_is_extracted():
    ctx = parent({"uber-trace-id": f"{TRACE_ID}:{SPAN_ID}:0:1"})
    assert (trace.format_trace_id(ctx.trace_id), trace.format_span_id(ctx.span_id)) == (
        TRACE_ID,
        SPAN_ID,
    )


def test_traceparent_wins_over_uber_trace_id():
    ctx = parent(
        {
            "uber-trace-id": f"{OTHER_TRACE_ID}:{OTHER_SPAN_ID}:0:1",
            "traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01",
        }
    )
    assert trace.format_trace_id(ctx.trace_id) == TRACE_ID


def test_garbage_headers_start_a_new_trace():
    assert not parent({"traceparent": "00-zz-yy-01", "uber-trace-id": "nonsense"}).is_valid
