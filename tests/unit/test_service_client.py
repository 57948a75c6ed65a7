"""ServiceClient against real loopback HTTP servers: balancing, fail-over, peer_unavailable."""

from __future__ import annotations

from collections import Counter

import aiohttp
import orjson
import pytest
from aiohttp import web

from common.client import ServiceClient
from common.discovery import StaticResolver
from common.errors import PeerUnavailable, problem_from_exception
from testkit.stack import free_port


class ListResolver:
    """A resolver whose instances the test sets, as a Consul watch would."""

    def __init__(self, urls: list[str]):
        self.urls = urls

    def instances(self, peer: str) -> list[str]:
        return list(self.urls)

    def watch(self, peers) -> None:
        pass


@pytest.fixture
async def servers():
    """Two live instances that count what they receive, and the address of a dead one."""
    hits: Counter[str] = Counter()
    runners, urls = [], []
    for name in ("a", "b"):

        async def orders(request: web.Request, name: str = name) -> web.Response:
            hits[name] += 1
            return web.json_response({"accepted": (await request.json())["n"], "by": name})

        app = web.Application()
        app.router.add_post("/internal/orders", orders)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{port}")
    dead = f"http://127.0.0.1:{free_port()}"
    async with aiohttp.ClientSession() as session:
        yield session, urls, dead, hits
    for runner in runners:
        await runner.cleanup()


async def test_requests_take_turns_over_the_instances(servers):
    session, urls, _, hits = servers
    client = ServiceClient(session, ListResolver(urls), "order_service")
    for n in range(10):
        assert (await client.request("POST", "/internal/orders", json={"n": n}))["accepted"] == n
    assert hits == {"a": 5, "b": 5}


async def test_an_idempotent_call_moves_to_another_instance_after_a_connection_error(servers):
    session, urls, dead, hits = servers
    client = ServiceClient(session, ListResolver([dead, urls[0]]), "order_service")
    for n in range(4):
        await client.request("POST", "/internal/orders", json={"n": n})
    assert hits == {"a": 4}


async def test_a_call_that_is_not_idempotent_is_not_repeated(servers):
    session, _, dead, _ = servers
    client = ServiceClient(session, ListResolver([dead]), "order_service")
    with pytest.raises(PeerUnavailable):
        await client.request("POST", "/internal/orders", json={"n": 1}, idempotent=False)


@pytest.mark.parametrize("instances", [[], ["dead"]])
async def test_no_healthy_instance_is_a_503_naming_the_peer(servers, instances):
    session, _, dead, _ = servers
    resolver = ListResolver([dead for _ in instances])
    client = ServiceClient(session, resolver, "order_service")
    with pytest.raises(PeerUnavailable) as caught:
        await client.request("POST", "/internal/orders", json={"n": 1})
    response = problem_from_exception(None, caught.value)
    body = orjson.loads(response.body)
    assert response.status == 503
    assert response.content_type == "application/problem+json"
    assert body["code"] == "peer_unavailable" and body["peer"] == "order_service"
    assert "order_service" in body["detail"]


async def test_static_addresses_may_list_several_instances(servers):
    session, urls, _, hits = servers
    resolver = StaticResolver({"order_service": f" {urls[0]}/, {urls[1]} ,"})
    assert resolver.instances("order_service") == urls
    client = ServiceClient(session, resolver, "order_service")
    for n in range(4):
        await client.request("POST", "/internal/orders", json={"n": n})
    assert hits == {"a": 2, "b": 2}
