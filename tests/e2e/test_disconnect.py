"""Clients that hang up mid-request: no half-done transaction, no pool connection lost.

Sanic cancels a request's handler when its client disconnects. Hundreds of
seckill, registration, payment and admin requests are cut off at random
moments (raw sockets closed or reset, aiohttp with tiny timeouts), all at
once. Afterwards the databases must add up, every committed seckill must
reach order_service, and each service's pool must still put every one of
its DB_POOL_SIZE connections to work at the same time.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct

import aiohttp
import orjson
import pytest

from testkit.invariants import books_from_databases, violations
from testkit.poll import eventually, wait_until
from testkit.stack import Stack, mysql_connect
from tests.support.factories import PASSWORD, Api, window

POOL_SIZE = 4
pytestmark = pytest.mark.slow


def database(stack: Stack, service: str) -> str:
    return f"{stack.prefix}_{service.removesuffix('_service')}"


def connection_ids(stack: Stack, service: str, busy_only: bool = False) -> set[int]:
    """The service's MySQL connections, as the server sees them (this probe's own excluded)."""
    sql = "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()"
    if busy_only:
        sql += " AND COMMAND = 'Query'"
    with mysql_connect() as conn, conn.cursor() as cur:
        cur.execute(sql, (database(stack, service),))
        return {row["ID"] for row in cur.fetchall()}


def pool_connections(stack: Stack, service: str) -> set[int]:
    """The ids of a full pool's POOL_SIZE connections, once MySQL shows exactly that many.

    A connection a test just closed may linger in the process list for a moment;
    a pool that lost connections never shows POOL_SIZE again while idle.
    """

    def full() -> set[int]:
        seen = connection_ids(stack, service)
        return seen if len(seen) == POOL_SIZE else set()

    return wait_until(full, 10, f"{service} to hold {POOL_SIZE} connections", interval=0.2)


async def hang_up(
    port: int, method: str, path: str, token: str | None, body: bytes | None, rng: random.Random
) -> None:
    """Send a request on a raw socket and disconnect at a random moment, sometimes with a RST."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = body or b""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(data)}\r\n"
    if data:
        head += "Content-Type: application/json\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    raw = head.encode() + b"\r\n" + data
    if rng.random() < 0.1:
        raw = raw[: rng.randrange(1, len(raw))]  # cut off before the request is complete
    writer.write(raw)
    await writer.drain()
    await asyncio.sleep(rng.choice([0, 0, 0.001, 0.003, 0.01, 0.03, 0.1]))
    if rng.random() < 0.5:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


async def give_up(
    session: aiohttp.ClientSession,
    url: str,
    method: str,
    token: str | None,
    body: bytes | None,
    rng: random.Random,
) -> None:
    """aiohttp with a tiny total timeout: it drops the connection when time is up."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body:
        headers["Content-Type"] = "application/json"
    timeout = aiohttp.ClientTimeout(total=rng.choice([0.001, 0.005, 0.01, 0.02, 0.05]))
    try:
        async with session.request(method, url, data=body, headers=headers, timeout=timeout) as r:
            await r.read()
    except (TimeoutError, aiohttp.ClientError):
        pass


async def storm_of_hang_ups(api: Api, stack: Stack, users, activities, count: int) -> None:
    rng = random.Random(20261126)
    admin = await api.admin_token()
    known_orders = stack.query("order_service", "SELECT order_no, user_id FROM orders")
    tokens = {user.id: user.token for user in users}
    gate = asyncio.Semaphore(120)

    def pick() -> tuple[str, str, str, str | None, bytes | None]:
        roll = rng.random()
        user = rng.choice(users)
        if roll < 0.55:
            activity = rng.choice(activities)
            return "activity_service", "POST", f"/activities/{activity}/seckill", user.token, None
        if roll < 0.70:
            body = {"username": f"hang{rng.randrange(10**9)}", "password": PASSWORD}
            return "user_service", "POST", "/users", None, orjson.dumps(body)
        if roll < 0.78:
            body = {"name": f"renamed {rng.randrange(1000)}"}
            path = f"/activities/{rng.choice(activities)}"
            return "activity_service", "PATCH", path, admin, orjson.dumps(body)
        if roll < 0.86 and known_orders:
            order = rng.choice(known_orders)
            path = f"/orders/{order['order_no']}/pay"
            return "order_service", "POST", path, tokens.get(order["user_id"]), None
        if roll < 0.90:
            body = {"name": "hung up", "product_name": "p", "price": "1.00", "stock": 3, **window()}
            return "activity_service", "POST", "/activities", admin, orjson.dumps(body)
        if roll < 0.95:
            return "order_service", "GET", "/orders?limit=1000", admin, None
        return "user_service", "GET", f"/users/{user.id}", user.token, None

    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            service, method, path, token, body = pick()
            async with gate:
                try:
                    if rng.random() < 0.6:
                        await hang_up(stack.ports[service], method, path, token, body, rng)
                    else:
                        await give_up(session, stack.url(service) + path, method, token, body, rng)
                except OSError:
                    pass  # the server may reset a connection we are still writing to

        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), timeout=180)


def assert_books_balance(stack: Stack) -> int:
    """For every activity, the seckill invariants (testkit/invariants.py); and no payment
    or account half recorded. Returns the number of units sold."""
    sold = 0
    for activity in stack.query("activity_service", "SELECT id FROM activities"):
        books = books_from_databases(stack.query, activity["id"])
        assert not (found := violations(books)), (activity["id"], found)
        sold += len(books.records)
    orders = stack.query("order_service", "SELECT COUNT(*) AS n FROM orders")[0]["n"]
    assert orders == sold, f"{orders} orders but {sold} sold"
    paid = stack.query(
        "order_service",
        "SELECT COUNT(*) AS n FROM orders WHERE (status = 'paid') <> (paid_at IS NOT NULL)",
    )
    assert paid[0]["n"] == 0, "a payment was half recorded"
    hashes = stack.query(
        "user_service", "SELECT COUNT(*) AS n FROM users WHERE password_hash NOT LIKE 'scrypt$%%'"
    )
    assert hashes[0]["n"] == 0, "an account was half recorded"
    return sold


class RowLock:
    """Holds row locks in an open transaction, so that the service's writes queue behind it."""

    def __init__(self, stack: Stack, service: str, sql: str, args: tuple):
        self.conn = mysql_connect(database(stack, service))
        self.conn.begin()
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
        self.id = self.conn.thread_id()

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


class PoolProbe:
    """Shows that all DB_POOL_SIZE connections of each service can work at the same time.

    It holds a row lock and sends 2 * POOL_SIZE writes that queue behind it; the
    probe passes once MySQL sees POOL_SIZE of the service's connections waiting
    at once. A connection leaked by a cancelled request would never turn up, a
    pool that lost some would show fewer. Afterwards every write is answered.
    """

    def __init__(self, api: Api, stack: Stack):
        self.api, self.stack = api, stack

    async def prepare(self) -> None:
        api = self.api
        self.admin = await api.admin_token()
        self.activity = await api.create_activity(stock=5, **window(start_in=600))
        self.buyer = await api.new_user()
        self.goods = await api.create_activity(stock=5)
        reply = await api.seckill(self.goods["id"], self.buyer.token)
        assert reply.status == 201, reply
        self.order_no = reply.body["order_no"]
        wait_until(
            lambda: self.stack.query(
                "order_service", "SELECT 1 FROM orders WHERE order_no = %s", (self.order_no,)
            ),
            timeout=10,
            what="the order to reach order_service",
        )

    async def _saturate(self, service: str, lock_sql: str, lock_args: tuple, send) -> None:
        lock = RowLock(self.stack, service, lock_sql, lock_args)
        try:
            tasks = [asyncio.create_task(send(n)) for n in range(POOL_SIZE * 2)]
            await eventually(
                lambda: (
                    len(connection_ids(self.stack, service, busy_only=True) - {lock.id})
                    >= POOL_SIZE
                ),
                30,
                f"{service}: all {POOL_SIZE} pool connections at work",
                interval=0.2,
            )
            assert len(connection_ids(self.stack, service) - {lock.id}) == POOL_SIZE
        finally:
            lock.release()
        statuses = await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
        assert all(status < 500 for status in statuses), statuses

    async def run(self) -> None:
        api = self.api

        async def patch(n: int) -> int:
            path = f"/activities/{self.activity['id']}"
            body = {"name": f"probe {n}"}
            return (await api.call("PATCH", "activity_service", path, self.admin, body)).status

        await self._saturate(
            "activity_service",
            "SELECT id FROM activities WHERE id = %s FOR UPDATE",
            (self.activity["id"],),
            patch,
        )

        async def pay(n: int) -> int:
            path = f"/orders/{self.order_no}/pay"
            return (await api.call("POST", "order_service", path, self.buyer.token)).status

        await self._saturate(
            "order_service",
            "SELECT id FROM orders WHERE order_no = %s FOR UPDATE",
            (self.order_no,),
            pay,
        )

        # An uncommitted row with the same username makes every insert wait on its key.
        name = f"probe_{random.randrange(10**9)}"

        async def register(n: int) -> int:
            return (await api.register(name)).status

        await self._saturate(
            "user_service",
            "INSERT INTO users (username, password_hash, is_admin, created_at) "
            "VALUES (%s, 'x', 0, UTC_TIMESTAMP())",
            (name,),
            register,
        )


def wait_until_settled(stack: Stack, timeout: float = 60) -> None:
    """Until the outbox is empty and nothing changes for a second.

    Clients that hung up do not stop their requests: the services finish them
    (that is the point), so sales may still commit after the last client left.
    """
    sql = {
        "activity_service": "SELECT (SELECT COALESCE(SUM(remaining), 0) FROM activities) AS a, "
        "(SELECT COUNT(*) FROM seckill_records) AS b, "
        "(SELECT COUNT(*) FROM seckill_records WHERE delivered_at IS NULL) AS c",
        "order_service": "SELECT COUNT(*) AS a, COALESCE(SUM(status = 'paid'), 0) AS b FROM orders",
        "user_service": "SELECT COUNT(*) AS a FROM users",
    }
    seen: list[dict] = []

    def settled() -> bool:
        seen.append({service: stack.query(service, query)[0] for service, query in sql.items()})
        return seen[-2:] == seen[-1:] * 2 and seen[-1]["activity_service"]["c"] == 0

    wait_until(settled, timeout, "the databases to settle", interval=1)


@pytest.mark.parametrize("batch_max", ["200", "1"], ids=["group-commit", "one-per-request"])
async def test_hang_ups_leave_no_half_done_work_and_no_lost_connections(own_stack, batch_max):
    stack = own_stack(DB_POOL_SIZE=str(POOL_SIZE), SECKILL_BATCH_MAX=batch_max)
    services = ("user_service", "activity_service", "order_service")
    async with aiohttp.ClientSession() as session:
        api = Api(stack, session)
        users = await api.new_users(150)
        scarce = await api.create_activity(stock=30)
        plenty = await api.create_activity(stock=100_000)
        activity_ids = [scarce["id"], plenty["id"]]
        for user in users[:20]:  # orders whose payment the storm races
            assert (await api.seckill(plenty["id"], user.token)).status == 201
        probe = PoolProbe(api, stack)
        await probe.prepare()
        await probe.run()  # also brings every pool to its full size
        before = {service: pool_connections(stack, service) for service in services}

        await storm_of_hang_ups(api, stack, users, activity_ids, count=900)
        await storm_of_hang_ups(api, stack, users, activity_ids, count=400)

        # Every committed seckill reaches order_service; the outbox empties by itself.
        wait_until_settled(stack)
        sold = assert_books_balance(stack)
        assert sold > 20
        scarce_now = await api.call("GET", "activity_service", f"/activities/{scarce['id']}")
        assert scarce_now.body["status"] == "sold_out", scarce_now

        # Not one pool connection was closed or replaced, and none leaked.
        after = {service: pool_connections(stack, service) for service in services}
        assert after == before
        await probe.run()

        # And the services answer normally, many requests at once.
        fresh = await api.new_users(POOL_SIZE * 3)
        replies = await asyncio.gather(*(api.seckill(plenty["id"], u.token) for u in fresh))
        assert all(r.status == 201 for r in replies), replies
        again = await asyncio.gather(*(api.seckill(plenty["id"], u.token) for u in fresh))
        assert [r.body["order_no"] for r in again] == [r.body["order_no"] for r in replies]
        wait_until_settled(stack)
        assert_books_balance(stack)
