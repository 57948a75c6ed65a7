"""The one aiohttp ClientSession per worker, and a ServiceClient per peer service."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import aiohttp
import orjson
from sanic import Sanic

from common.auth import SERVICE_TOKEN_HEADER
from common.config import Settings
from common.discovery import Resolver
from common.errors import PeerUnavailable
from common.logs import request_id_var
from common.tracing import client_trace_configs

logger = logging.getLogger("seckill.client")


class PeerError(Exception):
    """A peer answered, but not with success."""

    def __init__(self, peer: str, status: int, body: Any):
        super().__init__(f"{peer} answered {status}")
        self.peer, self.status, self.body = peer, status, body


class ServiceClient:
    """Calls one peer service: picks an instance, retries connection errors, propagates ids."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        resolver: Resolver,
        peer: str,
        service_token: str | None = None,
        attempts: int = 3,
    ):
        self.session, self.resolver, self.peer = session, resolver, peer
        self.service_token = service_token
        self.attempts = attempts
        self._turn = itertools.count()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        request_id = request_id_var.get()
        if request_id:
            headers["X-Request-ID"] = request_id
        if self.service_token:
            headers[SERVICE_TOKEN_HEADER] = self.service_token
        return headers

    async def request(
        self, method: str, path: str, json: Any = None, idempotent: bool = True
    ) -> Any:
        """Send one request; returns the decoded JSON body of a 2xx answer."""
        data = orjson.dumps(json) if json is not None else None
        last_error: Exception | None = None
        for attempt in range(self.attempts if idempotent else 1):
            instances = self.resolver.instances(self.peer)
            if not instances:
                break
            base = instances[next(self._turn) % len(instances)]
            try:
                async with self.session.request(
                    method, base + path, data=data, headers=self._headers()
                ) as response:
                    body = await response.read()
                    payload = orjson.loads(body) if body else None
                    if response.status >= 400:
                        raise PeerError(self.peer, response.status, payload)
                    return payload
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                last_error = exc
                logger.warning("%s %s%s failed: %r", method, base, path, exc)
                await asyncio.sleep(0.05 * attempt)
        raise PeerUnavailable(
            f"{self.peer} is unavailable", peer=self.peer
        ) from last_error


def setup_client(app: Sanic, settings: Settings, peers: tuple[str, ...] = ()) -> None:
    """One ClientSession per worker for the life of the app; app.ctx.peers[name] per peer."""

    @app.before_server_start
    async def open_session(app: Sanic) -> None:
        app.ctx.http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10, connect=2),
            connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=30),
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
            trace_configs=client_trace_configs(app),
        )
        app.ctx.peers = {
            peer: ServiceClient(app.ctx.http, app.ctx.resolver, peer, settings.service_token)
            for peer in peers
        }

    @app.after_server_stop
    async def close_session(app: Sanic) -> None:
        await app.ctx.http.close()
