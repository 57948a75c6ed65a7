"""OpenTelemetry tracing. Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set."""

from __future__ import annotations

from sanic import Sanic

from common.config import Settings


def setup_tracing(app: Sanic, settings: Settings) -> None:
    """Tracing seam: export over OTLP when an endpoint is configured."""
    app.ctx.tracing_enabled = bool(settings.otel_endpoint)
