"""The shop (docs/shop.md): the page, its files, and what it needs to know to start.

Every file the page loads is served from here, held in memory once with a gzip copy:
the page's own modules and the ALTCHA widget vendored from npm (activity_service/shop/).
"""

from __future__ import annotations

import gzip
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, raw
from sanic_ext import openapi

from common.errors import NotFound
from common.openapi import json_response, path_parameter, problem_response, text_response

shop = Blueprint("shop")

PAGE = Path(__file__).parent / "shop"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# What the page may load, call and run: its own files, the two services it calls, the
# widget's proof-of-work workers (which it starts from blob: URLs) and its injected styles.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "worker-src blob:; img-src 'self' data:; connect-src 'self' {peers}; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HOSTNAME = re.compile(r"^[A-Za-z0-9.:\[\]-]{1,255}$")


class Asset:
    """One file of the page, as sent: its bytes, gzipped too, and its type."""

    def __init__(self, path: Path):
        self.body = path.read_bytes()
        self.gzipped = gzip.compress(self.body, compresslevel=9, mtime=0)
        self.content_type = f"{TYPES[path.suffix]}; charset=utf-8"

    def response(self, request: Request, headers: dict[str, str] | None = None) -> HTTPResponse:
        headers = {"Cache-Control": "no-cache", "Vary": "Accept-Encoding", **(headers or {})}
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return raw(self.gzipped, headers=headers, content_type=self.content_type)
        return raw(self.body, headers=headers, content_type=self.content_type)


def load_assets() -> dict[str, Asset]:
    files = [PAGE / "shop.css", PAGE / "vendor" / "altcha" / "altcha.min.js"]
    files += sorted((PAGE / "js").glob("*.js"))
    return {path.name: Asset(path) for path in files}


INDEX = Asset(PAGE / "index.html")
ASSETS = load_assets()


class ShopConfig(BaseModel):
    user_service: str = Field(description="user_service's address, as this browser reaches it")
    order_service: str = Field(description="order_service's address, as this browser reaches it")
    now_ms: int = Field(description="the service's clock, Unix milliseconds: countdowns use it")


def peer_url(request: Request, configured: str | None, port: int) -> str:
    """A service's address for the browser: SHOP_USER_URL / SHOP_ORDER_URL when set, else
    the host name the page was loaded from with that service's port."""
    if configured:
        return configured.rstrip("/")
    hostname = urlsplit(f"//{request.host}").hostname or ""
    if not HOSTNAME.match(hostname):
        hostname = "127.0.0.1"
    if ":" in hostname:
        hostname = f"[{hostname}]"
    return f"{request.scheme}://{hostname}:{port}"


def peers(request: Request) -> tuple[str, str]:
    settings = request.app.ctx.settings
    return (
        peer_url(request, settings.shop_user_url, settings.user_service_port),
        peer_url(request, settings.shop_order_url, settings.order_service_port),
    )


@shop.get("/shop")
@openapi.summary("The shop: sales, countdowns, buying with the ALTCHA widget, my orders")
@openapi.tag("shop")
@text_response(200, "text/html", "the page")
async def shop_page(request: Request) -> HTTPResponse:
    csp = CSP.format(peers=" ".join(peers(request)))
    return INDEX.response(request, {"Content-Security-Policy": csp})


@shop.get("/shop/config")
@openapi.summary("Where the shop's page finds user_service and order_service, and the clock")
@openapi.tag("shop")
@json_response(200, ShopConfig, "the addresses and the service's time")
async def shop_config(request: Request) -> HTTPResponse:
    user, order = peers(request)
    config = ShopConfig(user_service=user, order_service=order, now_ms=int(time.time() * 1000))
    return json(config.model_dump(), headers={"Cache-Control": "no-store"})


@shop.get("/shop/assets/<name:str>")
@openapi.summary("A file of the shop's page: its scripts, its styles, the ALTCHA widget")
@openapi.tag("shop")
@path_parameter("name", {"type": "string"}, "the file's name")
@text_response(200, "text/javascript", "a script, or a style sheet (text/css)")
@problem_response(404, "not_found")
async def shop_asset(request: Request, name: str) -> HTTPResponse:
    asset = ASSETS.get(name)
    if asset is None:
        raise NotFound("no such file of the shop")
    return asset.response(request)
