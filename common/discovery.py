"""Where the peers are: static addresses, or Consul (register, health check, watch).

With CONSUL_HOST unset every peer is at its fixed *_SERVICE_URL. With it set,
each instance registers itself with the local Consul agent (retrying in the
background until the agent answers) and deregisters on graceful shutdown,
and every worker follows the healthy instances of the peers it calls with
Consul blocking queries, so a change is seen as soon as Consul sees it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from typing import Any, Protocol

import consul
import consul.aio
from sanic import Sanic

from common.config import Settings
from common.retry import AsyncRetrying, backoff

logger = logging.getLogger("seckill.discovery")

# How long one blocking query may wait for a change before Consul answers anyway.
WATCH_WAIT_SECONDS = 10
RETRY_FIRST, RETRY_MAX = 0.2, 5.0


class Resolver(Protocol):
    def instances(self, peer: str) -> list[str]:
        """Base URLs of the healthy instances of peer, possibly empty."""

    def watch(self, peers: Iterable[str]) -> None:
        """Start following these peers (a no-op where addresses never change)."""


class StaticResolver:
    """Peers at fixed addresses: USER_SERVICE_URL etc., each one URL or several, comma-separated."""

    def __init__(self, urls: dict[str, str]):
        self._urls = {
            name: [url.strip().rstrip("/") for url in value.split(",") if url.strip()]
            for name, value in urls.items()
        }

    def instances(self, peer: str) -> list[str]:
        return self._urls.get(peer, [])

    def watch(self, peers: Iterable[str]) -> None:
        pass


def _duration(seconds: float) -> str:
    """A Go duration string, as Consul expects: 1.5 -> '1500ms'."""
    return f"{round(seconds * 1000)}ms"


def _base_url(entry: dict[str, Any]) -> str:
    service = entry["Service"]
    address = service.get("Address") or entry["Node"]["Address"]
    return f"http://{address}:{service['Port']}"


class ConsulResolver:
    """Keeps the passing instances of each watched peer in memory, one blocking query per peer."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.client: consul.aio.Consul | None = None
        self._healthy: dict[str, list[str]] = {}
        self._watches: dict[str, asyncio.Task] = {}
        self._answered: dict[str, asyncio.Event] = {}

    def open(self) -> None:
        self.client = consul.aio.Consul(
            host=self.settings.consul_host,
            port=self.settings.consul_port,
            # a blocking query may take the wait plus Consul's jitter (wait / 16)
            connections_timeout=WATCH_WAIT_SECONDS + 5,
        )

    def instances(self, peer: str) -> list[str]:
        return self._healthy.get(peer, [])

    def watch(self, peers: Iterable[str]) -> None:
        for peer in peers:
            if peer not in self._watches:
                self._answered[peer] = asyncio.Event()
                self._watches[peer] = asyncio.create_task(self._follow(peer), name=f"watch {peer}")

    async def _follow(self, peer: str) -> None:
        index: int | None = None
        while True:
            async for attempt in AsyncRetrying(
                retry_on=Exception,  # Consul away: keep the last answer, ask again later
                wait=backoff(RETRY_FIRST, RETRY_MAX),
                log=lambda exc, _: logger.warning("cannot watch %s in Consul yet: %r", peer, exc),
            ):
                with attempt:
                    if attempt.number > 1:
                        index = None  # after an error, start afresh
                    new_index, entries = await self.client.health.service(
                        peer, passing=True, index=index, wait=f"{WATCH_WAIT_SECONDS}s"
                    )
            urls = sorted(_base_url(entry) for entry in entries)
            if urls != self._healthy.get(peer):
                logger.info("%s instances: %s", peer, urls or "none")
            self._healthy[peer] = urls
            self._answered[peer].set()
            new_index = int(new_index or 0)
            if new_index == index:
                # nothing changed (the wait ran out): a short pause keeps a misbehaving agent
                # that answers at once from turning this into a busy loop
                await asyncio.sleep(0.05)
            # Consul's advice: start over when the index goes backwards or is not positive
            went_back = index is not None and new_index < index
            index = None if new_index <= 0 or went_back else new_index

    async def settled(self, timeout: float) -> None:
        """Wait (at most timeout) until Consul has answered once for every watched peer."""
        waiters = [asyncio.create_task(event.wait()) for event in self._answered.values()]
        if waiters:
            await asyncio.wait(waiters, timeout=timeout)
            for waiter in waiters:
                waiter.cancel()

    async def close(self) -> None:
        for task in self._watches.values():
            task.cancel()
        await asyncio.gather(*self._watches.values(), return_exceptions=True)
        self._watches.clear()
        if self.client is not None:
            await self.client.close()


class Registration:
    """This instance's entry in Consul: registered with retries, deregistered once at shutdown."""

    def __init__(self, client: consul.aio.Consul, settings: Settings):
        self.client = client
        self.name = settings.service_name
        self.address, self.port = settings.advertise_host, settings.port
        self.service_id = f"{self.name}-{self.address}-{self.port}"
        self.tags = list(settings.consul_tags)
        self.check = consul.Check.http(
            f"http://{self.address}:{self.port}/health",
            interval=_duration(settings.consul_check_interval),
            timeout=_duration(settings.consul_check_timeout),
            deregister=_duration(settings.consul_deregister_after),
        )
        self.registered = False

    async def register(self) -> None:
        """Register, retrying with backoff until the agent accepts; serving goes on meanwhile."""
        async for attempt in AsyncRetrying(
            retry_on=Exception,  # for ever: the agent may come later
            wait=backoff(RETRY_FIRST, RETRY_MAX),
            log=lambda exc, _: logger.warning(
                "cannot register %s with Consul yet: %r", self.service_id, exc
            ),
        ):
            with attempt:
                await self.client.agent.service.register(
                    self.name,
                    service_id=self.service_id,
                    address=self.address,
                    port=self.port,
                    tags=self.tags,
                    check=self.check,
                )
        self.registered = True
        logger.info("registered %s with Consul", self.service_id)

    async def deregister(self) -> None:
        if not self.registered:
            return
        self.registered = False
        try:
            await asyncio.wait_for(self.client.agent.service.deregister(self.service_id), timeout=3)
            logger.info("deregistered %s from Consul", self.service_id)
        except Exception as exc:  # the health check and DeregisterCriticalServiceAfter clean up
            logger.warning("cannot deregister %s from Consul: %r", self.service_id, exc)


def registers_instance() -> bool:
    """Only the first worker registers: an instance is one entry however many workers it runs."""
    worker = os.environ.get("SANIC_WORKER_NAME", "")
    return worker == "" or worker.startswith("Sanic-Server-0-")


def setup_discovery(app: Sanic, settings: Settings) -> None:
    """app.ctx.resolver: static addresses, or Consul registration and watches when configured."""
    if not settings.consul_host:
        app.ctx.resolver = StaticResolver(settings.peer_urls)
        return
    resolver = ConsulResolver(settings)
    app.ctx.resolver = resolver

    @app.before_server_start
    async def open_consul(app: Sanic) -> None:
        resolver.open()
        app.ctx.registration = None
        if registers_instance():
            app.ctx.registration = Registration(resolver.client, settings)

    @app.after_server_start
    async def register(app: Sanic) -> None:
        if app.ctx.registration is not None:
            app.ctx.registering = asyncio.create_task(app.ctx.registration.register())
        # let the first calls to peers find their addresses (unless Consul is away)
        await resolver.settled(timeout=2.0)

    @app.before_server_stop
    async def deregister(app: Sanic) -> None:
        registering = getattr(app.ctx, "registering", None)
        if registering is not None:
            registering.cancel()
            await asyncio.gather(registering, return_exceptions=True)
            await app.ctx.registration.deregister()

    @app.after_server_stop
    async def close_consul(app: Sanic) -> None:
        await resolver.close()
