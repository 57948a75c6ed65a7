"""CORS for the shop (docs/shop.md): its page, served by activity_service, calls
user_service and order_service, which answer that page's origin and no other.

The allow-list is SHOP_ORIGINS (by default activity_service's own address, as 127.0.0.1
and as localhost); a wildcard is refused. The page sends its tokens in the Authorization
header, never in cookies, so no request is credentialed in CORS's sense and none needs
Access-Control-Allow-Credentials.
"""

from __future__ import annotations

import re
from typing import Any

from sanic import Request, Sanic
from sanic.response import HTTPResponse

from common.config import Settings

ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE"
ALLOW_HEADERS = "Authorization, Content-Type, X-Request-ID"
# The page reads how long to wait (429, 503) and names a request when it reports one.
EXPOSE_HEADERS = "Retry-After, X-Request-ID"
PREFLIGHT_MAX_AGE = "600"
ORIGIN = re.compile(
    r"^https?://[A-Za-z0-9.\-]+(:\d{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?$"
)


def default_origins(activity_service_port: int) -> tuple[str, ...]:
    """activity_service's address as a browser on this machine writes it."""
    port = activity_service_port
    return (f"http://127.0.0.1:{port}", f"http://localhost:{port}")


def origins_setting(value: Any) -> Any:
    """A settings validator (mode="before"): comma-separated origins, each scheme://host[:port]."""
    if isinstance(value, str):
        value = tuple(origin.strip().rstrip("/") for origin in value.split(",") if origin.strip())
    for origin in value:
        if not ORIGIN.match(origin):
            raise ValueError(
                f"must be origins such as http://shop.example:8002, comma-separated "
                f"(never a wildcard); {origin!r} is not one"
            )
    return value


def setup_cors(app: Sanic, settings: Settings) -> None:
    """Answer the allowed origins' preflights and let them read the answers."""
    origins = settings.shop_origins or default_origins(settings.activity_service_port)
    allowed = frozenset(origins)

    @app.on_response(priority=90)
    async def allow_the_shop(request: Request, response: HTTPResponse) -> None:
        headers = response.headers
        headers["Vary"] = "Origin"
        origin = request.headers.get("origin")
        if origin not in allowed:
            return
        headers["Access-Control-Allow-Origin"] = origin
        if request.method == "OPTIONS":
            headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        else:
            headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
