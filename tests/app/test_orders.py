"""order_service's contract: who sees and pays which order, paging, and the internal endpoint."""

import asyncio
import secrets

import pytest

from tests.support.expect import ORDER_KEYS, assert_field_error, assert_problem

# Orders made directly through the internal endpoint belong to no real activity.
DETACHED_ACTIVITY = 2**62


async def buy(api, activity_id, account) -> dict:
    reply = await api.seckill(activity_id, account.token)
    assert reply.status == 201, reply
    return reply.body


async def orders(api, token, query="") -> dict:
    reply = await api.call("GET", "order_service", f"/orders{query}", token=token)
    assert reply.status == 200, reply
    assert set(reply.body) == {"items", "total"}
    assert all(set(order) == ORDER_KEYS for order in reply.body["items"])
    return reply.body


async def test_the_seckill_order_is_in_order_service(api):
    activity = await api.create_activity(price="3.30")
    buyer = await api.new_user()
    order = await buy(api, activity["id"], buyer)
    reply = await api.call("GET", "order_service", f"/orders/{order['order_no']}", buyer.token)
    assert reply.status == 200 and reply.body == order, reply
    assert order["amount"] == "3.30" and order["status"] == "created"


async def test_users_list_only_their_own(api):
    first, second = await api.create_activity(), await api.create_activity()
    alice, bob = await api.new_users(2)
    mine = [await buy(api, first["id"], alice), await buy(api, second["id"], alice)]
    theirs = await buy(api, first["id"], bob)
    page = await orders(api, alice.token)
    assert page["total"] == 2
    assert page["items"] == list(reversed(mine))  # newest first
    assert (await orders(api, bob.token))["items"] == [theirs]
    in_first = await orders(api, alice.token, f"?activity_id={first['id']}")
    assert in_first == {"items": [mine[0]], "total": 1}
    own = await orders(api, alice.token, f"?user_id={alice.id}")
    assert own["total"] == 2


async def test_users_cannot_list_someone_elses(api):
    alice, bob = await api.new_users(2)
    reply = await api.call("GET", "order_service", f"/orders?user_id={bob.id}", alice.token)
    assert_problem(reply, 403, "forbidden")


async def test_admin_lists_everything_and_filters(api):
    activity, other = await api.create_activity(stock=5), await api.create_activity(stock=5)
    buyers = await api.new_users(3)
    placed = [await buy(api, activity["id"], b) for b in buyers]
    elsewhere = await buy(api, other["id"], buyers[0])
    admin = await api.admin_token()

    everything = await orders(api, admin, "?limit=1000")
    numbers = [o["order_no"] for o in everything["items"]]
    assert {o["order_no"] for o in [*placed, elsewhere]} <= set(numbers)
    assert everything["total"] >= 4
    by_activity = await orders(api, admin, f"?activity_id={activity['id']}")
    assert by_activity == {"items": list(reversed(placed)), "total": 3}
    by_user = await orders(api, admin, f"?user_id={buyers[0].id}")
    assert by_user == {"items": [elsewhere, placed[0]], "total": 2}
    both = await orders(api, admin, f"?activity_id={other['id']}&user_id={buyers[0].id}")
    assert both == {"items": [elsewhere], "total": 1}
    nobody = await orders(api, admin, f"?user_id={2**62}")
    assert nobody == {"items": [], "total": 0}


async def test_limit_default_bounds_and_offset(api):
    activity = await api.create_activity(stock=60)
    buyers = await api.new_users(55)
    await asyncio.gather(*(buy(api, activity["id"], b) for b in buyers))
    admin = await api.admin_token()
    query = f"?activity_id={activity['id']}"
    default = await orders(api, admin, query)
    assert len(default["items"]) == 50 and default["total"] == 55
    created = [o["created_at"] for o in default["items"]]
    assert created == sorted(created, reverse=True)
    assert len((await orders(api, admin, query + "&limit=1"))["items"]) == 1
    all_of_them = await orders(api, admin, query + "&limit=1000")
    assert len(all_of_them["items"]) == 55
    tail = await orders(api, admin, query + "&limit=10&offset=50")
    assert tail["items"] == all_of_them["items"][50:] and tail["total"] == 55


@pytest.mark.parametrize(
    "query, field",
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("offset=-1", "offset"),
        ("activity_id=0", "activity_id"),
        ("activity_id=-3", "activity_id"),
        ("activity_id=abc", "activity_id"),
        ("activity_id=99999999999999999999999", "activity_id"),
        ("user_id=1%20OR%201%3D1", "user_id"),
        ("status=refunded", "status"),
        ("unknown=1", "unknown"),
    ],
)
async def test_list_query_validates(api, query, field):
    reply = await api.call("GET", "order_service", f"/orders?{query}", await api.admin_token())
    assert_field_error(reply, field)


async def test_someone_elses_order_is_404_like_a_missing_one(api):
    activity = await api.create_activity()
    alice, bob = await api.new_users(2)
    order = await buy(api, activity["id"], alice)
    theirs = await api.call("GET", "order_service", f"/orders/{order['order_no']}", bob.token)
    missing_no = (
        order["order_no"][:-4] + "ffff"
        if not order["order_no"].endswith("ffff")
        else (order["order_no"][:-4] + "0000")
    )
    missing = await api.call("GET", "order_service", f"/orders/{missing_no}", bob.token)
    body = assert_problem(theirs, 404, "not_found")
    other = assert_problem(missing, 404, "not_found")
    assert body["detail"].replace(order["order_no"], "N") == other["detail"].replace(
        missing_no, "N"
    )
    admin = await api.call(
        "GET", "order_service", f"/orders/{order['order_no']}", await api.admin_token()
    )
    assert admin.status == 200 and admin.body == order


def paid_at(stack, order_no: str):
    rows = stack.query(
        "order_service", "SELECT paid_at FROM orders WHERE order_no = %s", (order_no,)
    )
    assert len(rows) == 1 and rows[0]["paid_at"] is not None, rows
    return rows[0]["paid_at"]


async def test_pay_once(api, stack):
    activity = await api.create_activity()
    buyer = await api.new_user()
    order = await buy(api, activity["id"], buyer)
    path = f"/orders/{order['order_no']}/pay"
    paid = await api.call("POST", "order_service", path, buyer.token)
    assert paid.status == 200, paid
    assert paid.body == order | {"status": "paid"}
    fetched = await api.call("GET", "order_service", f"/orders/{order['order_no']}", buyer.token)
    assert fetched.body["status"] == "paid"
    first = paid_at(stack, order["order_no"])
    again = await api.call("POST", "order_service", path, buyer.token)  # a retried payment
    assert again.status == 200 and again.body == paid.body, again
    # The retry answers the same and pays nothing again: the payment's time is the first one's.
    assert paid_at(stack, order["order_no"]) == first
    # The seckill keeps answering with the order as it created it.
    repeat = await api.seckill(activity["id"], buyer.token)
    assert repeat.status == 200 and repeat.body == order


async def test_only_the_owner_pays(api, stack):
    activity = await api.create_activity()
    alice, bob = await api.new_users(2)
    order = await buy(api, activity["id"], alice)
    path = f"/orders/{order['order_no']}/pay"
    assert_problem(await api.call("POST", "order_service", path, bob.token), 404, "not_found")
    admin = await api.admin_token()
    assert_problem(await api.call("POST", "order_service", path, admin), 403, "forbidden")
    assert_problem(await api.call("POST", "order_service", path), 401, "unauthorized")
    rows = stack.query(
        "order_service",
        "SELECT status, paid_at FROM orders WHERE order_no = %s",
        (order["order_no"],),
    )
    assert rows == [{"status": "created", "paid_at": None}]
    assert (await api.call("POST", "order_service", path, alice.token)).status == 200


async def test_concurrent_payments_pay_once(api, stack):
    activity = await api.create_activity()
    buyer = await api.new_user()
    order = await buy(api, activity["id"], buyer)
    path = f"/orders/{order['order_no']}/pay"
    replies = await asyncio.gather(
        *(api.call("POST", "order_service", path, buyer.token) for _ in range(10))
    )
    assert [r.status for r in replies] == [200] * 10
    assert all(r.body == order | {"status": "paid"} for r in replies)
    first = paid_at(stack, order["order_no"])
    # Ten more at once: each answers the paid order, and none pays it again.
    retries = await asyncio.gather(
        *(api.call("POST", "order_service", path, buyer.token) for _ in range(10))
    )
    assert [r.status for r in retries] == [200] * 10
    assert all(r.body == order | {"status": "paid"} for r in retries)
    assert paid_at(stack, order["order_no"]) == first


@pytest.mark.parametrize("order_no", ["2026112600000000000000000000", "nope", "x" * 40, "0"])
async def test_unknown_order_is_404(api, order_no):
    user = await api.new_user()
    for method, path in (("GET", f"/orders/{order_no}"), ("POST", f"/orders/{order_no}/pay")):
        reply = await api.call(method, "order_service", path, user.token)
        assert_problem(reply, 404, "not_found")


@pytest.mark.parametrize(
    "order_no", ["<script>alert(1)</script>", "20261126150000123ABCDEFABCDEF", "a" * 29, "x" * 40]
)
async def test_a_malformed_order_number_is_404_without_echoing_it(api, order_no):
    user = await api.new_user()
    for method, path in (("GET", f"/orders/{order_no}"), ("POST", f"/orders/{order_no}/pay")):
        reply = await api.call(method, "order_service", path, user.token)
        body = assert_problem(reply, 404, "not_found")
        assert order_no[:8] not in str(body), body


async def test_orders_need_a_token(api):
    for method, path in (("GET", "/orders"), ("GET", "/orders/abc"), ("POST", "/orders/abc/pay")):
        assert_problem(await api.call(method, "order_service", path), 401, "unauthorized")


def detached_order(user_id: int = 1) -> dict:
    return {
        "order_no": "20261126150000123" + secrets.token_hex(6),
        "activity_id": DETACHED_ACTIVITY,
        "user_id": user_id,
        "amount": "1.00",
        "created_at": "2026-11-26T15:00:00Z",
    }


async def test_internal_endpoint_refuses_users_and_anonymous(api, stack):
    user = await api.new_user()
    admin = await api.admin_token()
    body = {"orders": [detached_order(user.id)]}
    for token, headers in (
        (user.token, {}),
        (admin, {}),
        (None, {}),
        (None, {"X-Service-Token": "guess"}),
        (None, {"X-Service-Token": stack.service_token[:-1]}),
        (user.token, {"X-Service-Token": ""}),
    ):
        reply = await api.call(
            "POST", "order_service", "/internal/orders", token=token, json=body, headers=headers
        )
        assert_problem(reply, 403, "forbidden")
    order_no = body["orders"][0]["order_no"]
    rows = stack.query("order_service", "SELECT 1 FROM orders WHERE order_no = %s", (order_no,))
    assert rows == []


async def test_internal_endpoint_is_idempotent(api, stack):
    user = await api.new_user()
    order = detached_order(user.id)
    headers = {"X-Service-Token": stack.service_token}
    for _ in range(2):
        reply = await api.call(
            "POST", "order_service", "/internal/orders", json={"orders": [order]}, headers=headers
        )
        assert reply.status == 200 and reply.body == {"accepted": 1}, reply
    rows = stack.query(
        "order_service", "SELECT user_id FROM orders WHERE order_no = %s", (order["order_no"],)
    )
    assert rows == [{"user_id": user.id}]
    mine = await orders(api, user.token)
    assert [o["order_no"] for o in mine["items"]] == [order["order_no"]]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"order_no": "not hex!"}, "orders.0.order_no"),
        ({"order_no": "a" * 33}, "orders.0.order_no"),
        # Hex, but not the seckill's format: GET /orders/{order_no} could never find it.
        ({"order_no": "abc123"}, "orders.0.order_no"),
        ({"activity_id": 0}, "orders.0.activity_id"),
        ({"user_id": -1}, "orders.0.user_id"),
        ({"amount": "1.001"}, "orders.0.amount"),
        ({"created_at": "2026-11-26T15:00:00"}, "orders.0.created_at"),
        ({"created_at": "9999-12-31T23:59:59-12:00"}, "orders.0.created_at"),
        ({"created_at": 1_700_000_000}, "orders.0.created_at"),
        # What the columns cannot hold is refused, not clipped by INSERT IGNORE.
        ({"user_id": 2**64}, "orders.0.user_id"),
        ({"activity_id": 2**63}, "orders.0.activity_id"),
        ({"amount": "100000000.00"}, "orders.0.amount"),
    ],
)
async def test_internal_endpoint_validates(api, stack, change, field):
    headers = {"X-Service-Token": stack.service_token}
    body = {"orders": [detached_order() | change]}
    reply = await api.call("POST", "order_service", "/internal/orders", json=body, headers=headers)
    assert_field_error(reply, field)
    order_no = body["orders"][0]["order_no"]
    rows = stack.query("order_service", "SELECT 1 FROM orders WHERE order_no = %s", (order_no,))
    assert rows == []
