"""Where the peers are: a resolver interface, with static addresses as the first implementation."""

from __future__ import annotations

from typing import Protocol

from sanic import Sanic

from common.config import Settings


class Resolver(Protocol):
    def instances(self, peer: str) -> list[str]:
        """Base URLs of the healthy instances of peer, possibly empty."""


class StaticResolver:
    """Peers at fixed addresses from USER_SERVICE_URL, ACTIVITY_SERVICE_URL, ORDER_SERVICE_URL."""

    def __init__(self, urls: dict[str, str]):
        self._urls = {name: [url.rstrip("/")] for name, url in urls.items()}

    def instances(self, peer: str) -> list[str]:
        return self._urls.get(peer, [])


def setup_discovery(app: Sanic, settings: Settings) -> None:
    """Static peer addresses; Consul registration and watches plug in here when configured."""
    app.ctx.resolver = StaticResolver(settings.peer_urls)
