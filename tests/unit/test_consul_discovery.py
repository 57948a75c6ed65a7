"""Registration and watches against the Consul test double, with a real /health to check."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from common.discovery import ConsulResolver, Registration
from order_service.settings import OrderSettings
from testkit.poll import eventually
from testkit.stack import free_port
from tests.support.doubles.consul import ConsulDouble


class Instance:
    """A stand-in order_service instance: only /health, which a test can turn unhealthy."""

    def __init__(self):
        self.port, self.healthy = free_port(), True

    async def start(self) -> None:
        async def health(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"}, status=200 if self.healthy else 503)

        app = web.Application()
        app.router.add_get("/health", health)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def consul():
    double = ConsulDouble().start()
    yield double
    double.stop()


def settings_for(consul: ConsulDouble, port: int) -> OrderSettings:
    return OrderSettings(
        service_token="unused",
        order_service_port=port,
        consul_host=consul.host,
        consul_port=consul.port,
        consul_check_interval=0.2,
        consul_check_timeout=0.5,
    )


async def test_watch_follows_registrations_checks_and_deregistrations(consul):
    instances = [Instance(), Instance()]
    for instance in instances:
        await instance.start()
    resolver = ConsulResolver(settings_for(consul, 1))
    resolver.open()
    resolver.watch(["order_service"])
    registrations = [Registration(resolver.client, settings_for(consul, i.port)) for i in instances]
    try:
        await resolver.settled(timeout=5)
        assert resolver.instances("order_service") == []

        for registration in registrations:
            await registration.register()
        urls = sorted(i.url for i in instances)
        await eventually(lambda: resolver.instances("order_service") == urls, what="both")

        # With nothing changing, the watch is a blocking query held open, not a poll.
        path = "GET /v1/health/service/order_service"
        before = consul.requests[path]
        await asyncio.sleep(2)
        assert consul.requests[path] - before <= 1

        instances[0].healthy = False
        await eventually(
            lambda: resolver.instances("order_service") == [instances[1].url], what="drop"
        )
        instances[0].healthy = True
        await eventually(lambda: resolver.instances("order_service") == urls, what="return")

        await registrations[1].deregister()
        await eventually(
            lambda: resolver.instances("order_service") == [instances[0].url], what="deregister"
        )
        assert consul.deregister_calls == {registrations[1].service_id: 1}
    finally:
        await resolver.close()
        for instance in instances:
            await instance.runner.cleanup()


async def test_registration_waits_for_an_agent_that_is_not_up_yet():
    consul = ConsulDouble(port=free_port())
    instance = Instance()
    await instance.start()
    resolver = ConsulResolver(settings_for(consul, instance.port))
    resolver.open()
    registration = Registration(resolver.client, settings_for(consul, instance.port))
    registering = asyncio.create_task(registration.register())
    try:
        await asyncio.sleep(1)
        assert not registering.done() and not registration.registered
        consul.start()
        await asyncio.wait_for(registering, 15)
        assert registration.registered
        assert consul.register_calls == {registration.service_id: 1}
    finally:
        registering.cancel()
        consul.stop()
        await resolver.close()
        await instance.runner.cleanup()
