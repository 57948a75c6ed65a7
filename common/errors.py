"""AppError hierarchy and the one handler that turns every failure into RFC 9457 problem+json."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from opentelemetry import trace
from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse, json

logger = logging.getLogger("seckill.errors")

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    """A failure the client can act on: carries its HTTP status and a stable code."""

    status = 500
    code = "internal_error"
    headers: dict[str, str] = {}  # never mutated; an instance sets its own

    def __init__(self, detail: str | None = None, **extra: Any):
        self.detail = detail or HTTPStatus(self.status).phrase
        self.extra = extra
        super().__init__(self.detail)


class BadRequest(AppError):
    status, code = 400, "bad_request"


class Unauthorized(AppError):
    status, code = 401, "unauthorized"


class Forbidden(AppError):
    status, code = 403, "forbidden"


class NotFound(AppError):
    status, code = 404, "not_found"


class Conflict(AppError):
    status, code = 409, "conflict"


# A 422 lists this many of its errors at most, and error_count says how many there were: a
# body of 70,000 unknown fields was answered with 4 MB of them.
MAX_LISTED_ERRORS = 10


class InvalidRequest(AppError):
    """Validation failed; `errors` lists each field and what is wrong with it (the first
    MAX_LISTED_ERRORS), `error_count` how many failed in all (total, when more were found
    than were passed)."""

    status, code = 422, "invalid_request"

    def __init__(
        self, errors: list[dict[str, str]], detail: str | None = None, total: int | None = None
    ):
        super().__init__(
            detail or "the request did not validate",
            errors=errors[:MAX_LISTED_ERRORS],
            error_count=max(total or 0, len(errors)),
        )


class ServiceUnavailable(AppError):
    """Something this service needs does not answer now: try again in a moment."""

    status, code = 503, "service_unavailable"
    headers = {"Retry-After": "1"}


class PeerUnavailable(ServiceUnavailable):
    code = "peer_unavailable"


# Sanic raises these before a handler runs; map them onto stable codes.
_SANIC_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    416: "range_not_satisfiable",
    503: "service_unavailable",
}


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request | None, exc: SanicException) -> list[str]:
    """The methods a path answers, for the Allow header every 405 must carry (RFC 9110).

    The router names them for static paths only; for paths with parameters, ask it per method.
    """
    allowed = set(getattr(exc, "allowed_methods", None) or ())
    if not allowed and request is not None:
        for method in _METHODS:
            try:
                request.app.router.get(request.path, method, request.headers.get("host"))
            except SanicException:
                continue
            allowed.add(method)
    return sorted(allowed)


def problem_body(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The RFC 9457 problem details object, as answered and as documented."""
    return {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }


def problem(status: int, code: str, detail: str, **extra: Any) -> HTTPResponse:
    body = problem_body(status, code, detail, **extra)
    return json(body, status=status, content_type=PROBLEM_JSON)


def error_response(error: AppError) -> HTTPResponse:
    """An expected error as its problem+json response, for a handler to return rather than raise.

    The request's span (while tracing) is tagged with the code, as for a raised error.
    """
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("seckill.error_code", error.code)
    response = problem(error.status, error.code, error.detail, **error.extra)
    if error.headers:
        response.headers.update(error.headers)
    return response


def problem_from_exception(request: Request | None, exc: BaseException) -> HTTPResponse:
    if isinstance(exc, AppError):
        return error_response(exc)
    if isinstance(exc, SanicException):
        status = exc.status_code
        code = _SANIC_CODES.get(status, "internal_error" if status >= 500 else "bad_request")
        if status >= 500:
            logger.exception("server error", exc_info=exc)
            return problem(status, code, "the server could not handle the request")
        detail = str(exc) or HTTPStatus(status).phrase
        if status == 400 and "json" in detail.lower():
            detail = "the request body is not valid JSON"
        response = problem(status, code, detail)
        if status == 405:
            response.headers["Allow"] = ", ".join(allowed_methods(request, exc))
        return response
    logger.exception("unhandled error", exc_info=exc)
    return problem(500, "internal_error", "the server could not handle the request")


def setup_errors(app: Sanic) -> None:
    """Every exception, expected or not, leaves the service as problem+json."""
    app.error_handler.add(Exception, problem_from_exception)
