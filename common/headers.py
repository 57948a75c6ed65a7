"""Security headers on every response, and JSON as the only request body type.

Called from common/web.py's one middleware each way, with values built once: the
seckill is the hot path.
"""

from __future__ import annotations

from sanic import Request
from sanic.response import HTTPResponse

from common.errors import AppError

# A JSON answer is never a page: it may load nothing, and nobody may frame it.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI (/docs): its scripts, styles and images come from this service only (no CDN),
# and it calls only this service. Its React components set style attributes, hence
# 'unsafe-inline' for styles, never for scripts; its icons are data: URIs.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)
COMMON_HEADERS = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"))
# A response that carries a credential must not be stored by any cache (RFC 6749 5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class UnsupportedMediaType(AppError):
    status, code = 415, "unsupported_media_type"


def is_json(content_type: str) -> bool:
    """application/json, or a +json type, with any parameters (charset)."""
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def refuse_non_json_body(request: Request) -> None:
    # Forms, text/plain and bodies without a type are what another site's page can make
    # a browser send without a CORS preflight: refused, so no such request acts here.
    if request.body and not is_json(request.headers.get("content-type", "")):
        raise UnsupportedMediaType(
            "a request body must be JSON, sent with Content-Type: application/json"
        )


def add_security_headers(response: HTTPResponse) -> None:
    headers = response.headers
    for name, value in COMMON_HEADERS:
        headers[name] = value
    if "content-security-policy" in headers:  # a page's own (the shop's names its peers)
        return
    content_type = response.content_type or ""
    headers["Content-Security-Policy"] = (
        DOCS_CSP if content_type.startswith("text/html") else API_CSP
    )
