"""The one aiohttp ClientSession per worker, and a ServiceClient per peer service."""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson
from sanic import Sanic

from common.auth import SERVICE_TOKEN_HEADER
from common.config import Settings
from common.discovery import Resolver
from common.errors import PeerUnavailable
from common.retry import AsyncRetrying
from common.telemetry.logs import request_id_var
from common.telemetry.tracing import client_trace_configs

logger = logging.getLogger("seckill.client")

# How long an instance that refused a connection is passed over.
BENCH_SECONDS = 3.0
CONNECTION_ERRORS = (TimeoutError, aiohttp.ClientConnectionError)


class PeerError(Exception):
    """A peer answered, but not with success."""

    def __init__(self, peer: str, status: int, body: Any):
        super().__init__(f"{peer} answered {status}")
        self.peer, self.status, self.body = peer, status, body


class ServiceClient:
    """Calls one peer service: picks an instance per request, fails over, propagates ids.

    The instance with the fewest requests in flight from this worker wins, ties
    taken in turn. An instance that refused a connection is benched for a few
    seconds (Consul's check may not have noticed yet); an idempotent request
    that hit a connection error is retried on another instance.
    """

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
        self._outstanding: Counter[str] = Counter()
        self._benched: dict[str, float] = {}

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        request_id = request_id_var.get()
        if request_id:
            headers["X-Request-ID"] = request_id
        if self.service_token:
            headers[SERVICE_TOKEN_HEADER] = self.service_token
        return headers

    def pick(self, tried: set[str]) -> str | None:
        """The instance for the next attempt: untried, not benched, least busy; None if none."""
        instances = self.resolver.instances(self.peer)
        if not instances:
            return None
        now = time.monotonic()
        fresh = [url for url in instances if url not in tried] or instances
        ready = [url for url in fresh if self._benched.get(url, 0) <= now] or fresh
        start = next(self._turn)
        turn = [ready[(start + k) % len(ready)] for k in range(len(ready))]
        return min(turn, key=self._outstanding.__getitem__)

    def _bench(self, base: str) -> None:
        now = time.monotonic()
        self._benched = {url: until for url, until in self._benched.items() if until > now}
        self._benched[base] = now + BENCH_SECONDS

    async def request(
        self, method: str, path: str, json: Any = None, idempotent: bool = True
    ) -> Any:
        """Send one request; returns the decoded JSON body of a 2xx answer."""
        data = orjson.dumps(json) if json is not None else None
        tried: set[str] = set()
        try:
            async for attempt in AsyncRetrying(
                retry_on=CONNECTION_ERRORS,  # the request never reached a server, or no answer
                attempts=self.attempts if idempotent else 1,
                wait=lambda number: 0.05 * (number - 1),
            ):
                with attempt:
                    return await self._send(method, path, data, tried)
        except CONNECTION_ERRORS as exc:
            raise self._unavailable() from exc
        raise AssertionError("unreachable")

    def _unavailable(self) -> PeerUnavailable:
        return PeerUnavailable(f"no healthy instance of {self.peer} answered", peer=self.peer)

    async def _send(self, method: str, path: str, data: bytes | None, tried: set[str]) -> Any:
        """One attempt, at an instance not tried yet where there is one."""
        base = self.pick(tried)
        if base is None:
            raise self._unavailable()
        tried.add(base)
        self._outstanding[base] += 1
        try:
            async with self.session.request(
                method, base + path, data=data, headers=self._headers()
            ) as response:
                body = await response.read()
                payload = orjson.loads(body) if body else None
                if response.status >= 400:
                    raise PeerError(self.peer, response.status, payload)
                return payload
        except CONNECTION_ERRORS as exc:
            if isinstance(exc, aiohttp.ClientConnectorError):
                self._bench(base)
            logger.warning("%s %s%s failed: %r", method, base, path, exc)
            raise
        finally:
            self._outstanding[base] -= 1
            if not self._outstanding[base]:
                del self._outstanding[base]


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
        app.ctx.resolver.watch(peers)

    @app.after_server_stop
    async def close_session(app: Sanic) -> None:
        await app.ctx.http.close()
