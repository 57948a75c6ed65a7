"""JSON log lines that carry the service, the request id and the trace of the current request."""

from __future__ import annotations

import contextvars
import logging
import logging.config
from datetime import UTC, datetime
from pathlib import Path

import orjson
import yaml
from opentelemetry import trace

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
_service_name = "seckill"

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class ContextFilter(logging.Filter):
    """Stamps every record with the request id and the active span's ids."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = _service_name
        record.request_id = request_id_var.get()
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        else:
            record.trace_id = record.span_id = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def setup_logging(service_name: str, level: str = "INFO") -> dict:
    """Configure this process's logging from logging.yml (the runner's job, not the factory's)."""
    global _service_name
    _service_name = service_name
    config = yaml.safe_load((Path(__file__).with_name("logging.yml")).read_text())
    config["root"]["level"] = level
    logging.config.dictConfig(config)
    return config
