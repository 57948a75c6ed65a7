"""Consul service discovery, end to end: real services, a Consul test double, real MySQL.

Every stack here gets dead static peer URLs, so whatever reaches a peer found
it through Consul.
"""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request

import aiohttp
import pytest

from testkit.invariants import books_from_databases, settle
from testkit.poll import eventually
from testkit.stack import SERVICES, Stack, free_port
from tests.support.doubles.consul import ConsulDouble, consul_env
from tests.support.factories import Api

pytestmark = pytest.mark.slow


def service_id(stack: Stack, name: str) -> str:
    return f"{stack.services[name]}-127.0.0.1-{stack.ports[name]}"


def passing_ids(double: ConsulDouble, service: str) -> set[str]:
    return {entry["Service"]["ID"] for entry in double.passing(service)}


def handoffs(stack: Stack, name: str) -> int:
    """POST /internal/orders this instance answered with success, from its own access log."""
    count = 0
    for line in (stack.tmp / f"{name}.log").read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("logger") == "seckill.access" and entry.get("msg", "").startswith(
            "POST /internal/orders "
        ):
            count += entry.get("status") == 200
    return count


def health(stack: Stack, name: str) -> int:
    with urllib.request.urlopen(stack.url(name) + "/health", timeout=5) as response:
        return response.status


@pytest.fixture
def consul():
    double = ConsulDouble().start()
    yield double
    double.stop()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as session:
        yield session


async def seckill_all(api: Api, activity_id: int, buyers, concurrency: int = 8, on_reply=None):
    gate = asyncio.Semaphore(concurrency)

    async def one(buyer):
        async with gate:
            reply = await api.seckill(activity_id, buyer.token)
            if on_reply:
                on_reply(reply)
            return reply

    return await asyncio.gather(*(one(b) for b in buyers))


async def assert_invariants(stack: Stack, activity_id: int, sold: int) -> None:
    """The seckill invariants, from the databases, once order_service holds every order."""
    books, found = await asyncio.to_thread(
        settle, lambda: books_from_databases(stack.query, activity_id)
    )
    assert not found, found
    assert books.stock - books.remaining == len(books.orders) == sold


async def test_services_register_pass_checks_and_deregister_on_sigterm_or_sigint(
    consul, own_stack, session
):
    stack = own_stack(**consul_env(consul))
    for name in SERVICES:
        sid = service_id(stack, name)
        await eventually(lambda n=name, s=sid: s in passing_ids(consul, n), 20, f"{name} passing")
        (entry,) = consul.passing(name)
        assert entry["Service"]["Address"] == "127.0.0.1"
        assert entry["Service"]["Port"] == stack.ports[name]
        assert "seckill" in entry["Service"]["Tags"]
        (check,) = entry["Checks"]
        assert check["Definition"] == {
            "HTTP": f"{stack.url(name)}/health",
            "Interval": "500ms",
            "Timeout": "1000ms",
            "DeregisterCriticalServiceAfter": "60000ms",
        }
        assert consul.check_runs[sid] >= 1 and consul.register_calls[sid] == 1

    # The peers are reachable only through Consul: a seckill needs user_service's key
    # (activity_service) and the hand-off to order_service.
    api = Api(stack, session)
    activity = await api.create_activity(stock=2)
    buyer = await api.new_user()
    reply = await api.seckill(activity["id"], buyer.token)
    assert reply.status == 201, reply
    await assert_invariants(stack, activity["id"], sold=1)

    # An instance of several workers is one registration, deregistered once.
    multi = stack.add_instance("order_service", "order_multi", SECKILL_WORKERS="2")
    multi_id = service_id(stack, multi)
    await eventually(lambda: multi_id in passing_ids(consul, "order_service"), 20, "order_multi")
    await asyncio.sleep(1)  # room for a second worker's registration, were there one
    assert consul.register_calls[multi_id] == 1

    for name in (multi, *SERVICES):
        sid = service_id(stack, name)
        stack.stop(name, sig=signal.SIGINT if name == "user_service" else signal.SIGTERM)
        assert stack.procs[name].returncode is not None
        assert sid not in consul.get("/v1/agent/services"), f"{name} still registered"
        assert consul.deregister_calls[sid] == 1


async def test_two_order_instances_share_traffic_survive_a_kill_and_welcome_a_third(
    consul, own_stack, session
):
    stack = own_stack(**consul_env(consul, ACCESS_LOG="true", LOG_LEVEL="INFO"))
    stack.add_instance("order_service", "order_b")
    ids = {service_id(stack, n) for n in ("order_service", "order_b")}
    await eventually(lambda: passing_ids(consul, "order_service") == ids, 20, "two order instances")
    api = Api(stack, session)
    buyers = await api.new_users(60)

    # Both instances take seckill hand-offs.
    first = await api.create_activity(stock=200)
    replies = await seckill_all(api, first["id"], buyers[:40])
    assert all(r.status == 201 for r in replies), [r for r in replies if r.status != 201][:3]
    await eventually(
        lambda: handoffs(stack, "order_service") and handoffs(stack, "order_b"),
        20,
        "hand-offs on both instances",
    )

    # SIGKILL one in the middle of traffic: no seckill fails.
    second = await api.create_activity(stock=200)
    answered = 0

    def count(reply):
        nonlocal answered
        answered += 1

    async def kill_midway():
        await eventually(lambda: answered >= 15, 60, "traffic before the kill")
        taken = handoffs(stack, "order_b") - earlier
        stack.kill("order_b")
        return taken

    earlier = handoffs(stack, "order_b")
    results, taken_before_kill = await asyncio.gather(
        seckill_all(api, second["id"], buyers, concurrency=4, on_reply=count), kill_midway()
    )
    assert taken_before_kill >= 1, "order_b was not taking traffic when it was killed"
    assert all(r.status == 201 for r in results), [r for r in results if r.status != 201][:3]
    # ... and no hand-off failed: the ones cut off on order_b went to the other instance
    # at once instead of waiting for the relay.
    assert "order hand-off failed" not in (stack.tmp / "activity_service.log").read_text()
    await eventually(
        lambda: passing_ids(consul, "order_service") == {service_id(stack, "order_service")},
        20,
        "the killed instance to fail its check",
    )

    # A third instance takes traffic within a few seconds of passing its check.
    stack.add_instance("order_service", "order_c")
    third_id = service_id(stack, "order_c")
    await eventually(lambda: third_id in passing_ids(consul, "order_service"), 20, "order_c")
    third = await api.create_activity(stock=200)
    sent = 0

    async def order_c_took_one() -> bool:
        nonlocal sent
        if handoffs(stack, "order_c"):
            return True
        assert sent < len(buyers), "order_c got no traffic"
        reply = await api.seckill(third["id"], buyers[sent].token)
        assert reply.status == 201, reply
        sent += 1
        return False

    await eventually(order_c_took_one, 20, "order_c to take a hand-off", interval=0.05)

    await assert_invariants(stack, first["id"], sold=40)
    await assert_invariants(stack, second["id"], sold=len(buyers))
    await assert_invariants(stack, third["id"], sold=sent)


async def test_services_start_without_consul_and_register_once_it_appears(own_stack, session):
    double = ConsulDouble(port=free_port())
    stack = own_stack(**consul_env(double))
    try:
        for name in SERVICES:
            assert health(stack, name) == 200
        await asyncio.sleep(1)
        double.start()
        for name in SERVICES:
            sid = service_id(stack, name)
            await eventually(
                lambda n=name, s=sid: s in passing_ids(double, n), 30, f"{name} registered"
            )
        # activity_service finds user_service (for its token key) and order_service through
        # Consul too, once its watches get an answer.
        api = Api(stack, session)
        buyer = await api.new_user()

        async def recovered() -> bool:
            return (await api.seckill(0, buyer.token)).status == 404

        await eventually(recovered, 30, "activity_service to find its peers", interval=0.5)
        activity = await api.create_activity(stock=1)
        reply = await api.seckill(activity["id"], buyer.token)
        assert reply.status == 201, reply
        await assert_invariants(stack, activity["id"], sold=1)
    finally:
        double.stop()
