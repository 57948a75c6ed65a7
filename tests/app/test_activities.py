"""activity_service's contract: admin CRUD, public reads, statuses, and the seckill's answers."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.expect import ACTIVITY_KEYS, ORDER_KEYS, assert_field_error, assert_problem
from tests.support.factories import iso, window


def new_activity(**fields) -> dict:
    return {
        "name": "Launch",
        "product_name": "Keyboard",
        "price": "19.90",
        "stock": 10,
        **window(),
        **fields,
    }


async def create(api, body, token=None):
    token = token or await api.admin_token()
    return await api.call("POST", "activity_service", "/activities", token=token, json=body)


async def test_create_returns_the_activity(api):
    body = new_activity(name="Double 11", product_name="Mouse", price="0.01", stock=7)
    reply = await create(api, body)
    assert reply.status == 201, reply
    activity = reply.body
    assert set(activity) == ACTIVITY_KEYS
    assert activity["name"] == "Double 11" and activity["product_name"] == "Mouse"
    assert activity["price"] == "0.01" and activity["stock"] == 7 and activity["remaining"] == 7
    assert activity["starts_at"] == body["starts_at"] and activity["ends_at"] == body["ends_at"]
    assert activity["status"] == "active"
    fetched = await api.call("GET", "activity_service", f"/activities/{activity['id']}")
    assert fetched.status == 200 and fetched.body == activity


async def test_times_in_other_offsets_come_back_in_utc(api):
    reply = await create(
        api,
        new_activity(starts_at="2026-01-01T08:00:00+08:00", ends_at="2030-06-01T10:30:00-02:00"),
    )
    assert reply.status == 201, reply
    assert reply.body["starts_at"] == "2026-01-01T00:00:00Z"
    assert reply.body["ends_at"] == "2030-06-01T12:30:00Z"


async def test_price_always_has_two_places(api):
    for sent, shown in (("5", "5.00"), ("5.5", "5.50"), ("99999999.99", "99999999.99")):
        reply = await create(api, new_activity(price=sent))
        assert reply.status == 201 and reply.body["price"] == shown, reply


async def test_only_admins_create(api):
    user = await api.new_user()
    assert_problem(await create(api, new_activity(), token=user.token), 403, "forbidden")
    reply = await api.call("POST", "activity_service", "/activities", json=new_activity())
    assert_problem(reply, 401, "unauthorized")


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"stock": -1}, "stock"),
        ({"stock": "10"}, "stock"),
        ({"stock": 1.5}, "stock"),
        ({"stock": True}, "stock"),
        ({"stock": 10**30}, "stock"),
        ({"price": "0"}, "price"),
        ({"price": "-1.00"}, "price"),
        ({"price": "1.999"}, "price"),
        ({"price": "abc"}, "price"),
        ({"price": "NaN"}, "price"),
        ({"price": "Infinity"}, "price"),
        ({"price": "1e3"}, "price"),
        ({"price": 19.9}, "price"),
        ({"price": "100000000.00"}, "price"),
        ({"name": ""}, "name"),
        ({"name": "n" * 101}, "name"),
        ({"product_name": None}, "product_name"),
        ({"starts_at": "2026-01-01T00:00:00"}, "starts_at"),
        ({"ends_at": "2030-01-01 00:00:00"}, "ends_at"),
        ({"starts_at": "yesterday"}, "starts_at"),
        ({"starts_at": 1_700_000_000}, "starts_at"),
        ({"starts_at": "0001-01-01T00:00:00Z"}, "starts_at"),
        ({"ends_at": "9999-12-31T23:59:59-12:00"}, "ends_at"),
        ({"extra": 1}, "extra"),
        ({"remaining": 3}, "remaining"),
        ({"id": 99}, "id"),
    ],
)
async def test_create_validates(api, changes, field):
    assert_field_error(await create(api, new_activity(**changes)), field)


@pytest.mark.parametrize("missing", sorted(new_activity()))
async def test_create_requires_every_field(api, missing):
    body = new_activity()
    del body[missing]
    assert_field_error(await create(api, body), missing)


async def test_window_must_go_forward(api):
    at = iso(datetime.now(UTC))
    for ends in (at, iso(datetime.now(UTC) - timedelta(hours=1))):
        reply = await create(api, new_activity(starts_at=at, ends_at=ends))
        body = assert_problem(reply, 422, "invalid_request")
        assert "ends_at" in str(body["errors"])


async def test_zero_stock_is_allowed_and_sold_out(api):
    activity = (await create(api, new_activity(stock=0))).body
    assert activity["status"] == "sold_out" and activity["remaining"] == 0
    user = await api.new_user()
    assert_problem(await api.seckill(activity["id"], user.token), 409, "sold_out")


async def test_statuses(api):
    upcoming = await api.create_activity(**window(start_in=3600))
    active = await api.create_activity()
    ended = await api.create_activity(**window(start_in=-7200, length=3600))
    ended_and_sold_out = await api.create_activity(stock=0, **window(start_in=-7200, length=60))
    assert upcoming["status"] == "upcoming"
    assert active["status"] == "active"
    assert ended["status"] == "ended"
    assert ended_and_sold_out["status"] == "ended"  # ended wins over sold_out

    one = await api.create_activity(stock=1)
    buyer = await api.new_user()
    assert (await api.seckill(one["id"], buyer.token)).status == 201
    now = await api.call("GET", "activity_service", f"/activities/{one['id']}")
    assert now.body["status"] == "sold_out" and now.body["remaining"] == 0


async def test_list_pages_newest_first(api):
    created = [await api.create_activity(name=f"page {n}") for n in range(3)]
    first = await api.call("GET", "activity_service", "/activities?limit=2")
    assert first.status == 200, first
    assert set(first.body) == {"items", "total"}
    assert len(first.body["items"]) == 2 and first.body["total"] >= 3
    assert [a["id"] for a in first.body["items"]] == [created[2]["id"], created[1]["id"]]
    assert all(set(a) == ACTIVITY_KEYS for a in first.body["items"])
    second = await api.call("GET", "activity_service", "/activities?limit=2&offset=1")
    assert second.body["items"][0]["id"] == created[1]["id"]
    past_end = await api.call("GET", "activity_service", "/activities?offset=10000000")
    assert past_end.status == 200 and past_end.body["items"] == []
    assert past_end.body["total"] == first.body["total"]


async def test_list_limits(api):
    while (await api.call("GET", "activity_service", "/activities")).body["total"] < 101:
        await asyncio.gather(*(api.create_activity() for _ in range(25)))
    default = await api.call("GET", "activity_service", "/activities")
    assert len(default.body["items"]) == 20
    one = await api.call("GET", "activity_service", "/activities?limit=1")
    assert len(one.body["items"]) == 1
    most = await api.call("GET", "activity_service", "/activities?limit=100")
    assert len(most.body["items"]) == 100
    ids = [a["id"] for a in most.body["items"]]
    assert ids == sorted(ids, reverse=True)


@pytest.mark.parametrize(
    "query, field",
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=1.5", "limit"),
        ("offset=-1", "offset"),
        ("offset=99999999999999999999999", "offset"),
        ("limit=1&limit=2", "limit"),
        ("page=2", "page"),
    ],
)
async def test_list_query_validates(api, query, field):
    assert_field_error(await api.call("GET", "activity_service", f"/activities?{query}"), field)


@pytest.mark.parametrize("activity_id", [0, -1, 999_999_999, 2**63 - 1, 2**63, 10**40])
async def test_unknown_activity_is_404(api, activity_id):
    admin = await api.admin_token()
    user = await api.new_user()
    path = f"/activities/{activity_id}"
    assert_problem(await api.call("GET", "activity_service", path), 404, "not_found")
    reply = await api.call("PATCH", "activity_service", path, token=admin, json={"name": "x"})
    assert_problem(reply, 404, "not_found")
    assert_problem(await api.call("DELETE", "activity_service", path, token=admin), 404)
    assert_problem(await api.seckill(activity_id, user.token), 404, "not_found")


async def test_patch_changes_fields(api):
    activity = await api.create_activity(**window(start_in=3600))
    admin = await api.admin_token()
    path = f"/activities/{activity['id']}"
    changes = {"name": "Renamed", "product_name": "Trackball", "price": "7.5", "stock": 3}
    reply = await api.call("PATCH", "activity_service", path, token=admin, json=changes)
    assert reply.status == 200, reply
    assert reply.body["name"] == "Renamed" and reply.body["product_name"] == "Trackball"
    assert reply.body["price"] == "7.50"
    assert reply.body["stock"] == 3 and reply.body["remaining"] == 3
    fetched = await api.call("GET", "activity_service", path)
    assert fetched.body == reply.body
    unchanged = await api.call("PATCH", "activity_service", path, token=admin, json={})
    assert unchanged.status == 200 and unchanged.body == reply.body


async def test_patch_window_and_stock_before_start(api):
    activity = await api.create_activity(stock=5, **window(start_in=3600))
    admin = await api.admin_token()
    path = f"/activities/{activity['id']}"
    starts = datetime.now(UTC) + timedelta(hours=2)
    new_window = {"starts_at": iso(starts), "ends_at": iso(starts + timedelta(hours=1))}
    reply = await api.call("PATCH", "activity_service", path, token=admin, json=new_window)
    assert reply.status == 200 and reply.body["starts_at"] == new_window["starts_at"], reply
    backwards = {"ends_at": iso(starts - timedelta(minutes=1))}
    reply = await api.call("PATCH", "activity_service", path, token=admin, json=backwards)
    assert_field_error(reply, "ends_at")


async def test_patch_stock_after_start_is_409(api):
    activity = await api.create_activity(stock=5)
    admin = await api.admin_token()
    path = f"/activities/{activity['id']}"
    reply = await api.call("PATCH", "activity_service", path, token=admin, json={"stock": 50})
    assert_problem(reply, 409, "activity_started")
    still = await api.call("GET", "activity_service", path)
    assert still.body["stock"] == 5 and still.body["remaining"] == 5
    renamed = await api.call("PATCH", "activity_service", path, token=admin, json={"name": "ok"})
    assert renamed.status == 200 and renamed.body["name"] == "ok"


async def test_patch_opening_an_upcoming_activity_lets_buyers_in(api):
    activity = await api.create_activity(stock=2, **window(start_in=3600))
    buyer = await api.new_user()
    assert_problem(await api.seckill(activity["id"], buyer.token), 409, "not_started")
    admin = await api.admin_token()
    reply = await api.call(
        "PATCH",
        "activity_service",
        f"/activities/{activity['id']}",
        token=admin,
        json={"stock": 1, **window(start_in=-10)},
    )
    assert reply.status == 200 and reply.body["status"] == "active", reply
    assert (await api.seckill(activity["id"], buyer.token)).status == 201
    other = await api.new_user()
    assert_problem(await api.seckill(activity["id"], other.token), 409, "sold_out")


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"stock": -1}, "stock"),
        ({"stock": None}, "stock"),
        ({"name": None}, "name"),
        ({"price": "1.234"}, "price"),
        ({"price": 5}, "price"),
        ({"starts_at": "2026-01-01T00:00:00"}, "starts_at"),
        ({"remaining": 100}, "remaining"),
        ({"status": "active"}, "status"),
    ],
)
async def test_patch_validates(api, patch, field):
    activity = await api.create_activity(**window(start_in=3600))
    admin = await api.admin_token()
    reply = await api.call(
        "PATCH", "activity_service", f"/activities/{activity['id']}", token=admin, json=patch
    )
    assert_field_error(reply, field)


async def test_only_admins_change_or_delete(api):
    activity = await api.create_activity()
    user = await api.new_user()
    path = f"/activities/{activity['id']}"
    reply = await api.call("PATCH", "activity_service", path, token=user.token, json={"name": "x"})
    assert_problem(reply, 403, "forbidden")
    assert_problem(await api.call("DELETE", "activity_service", path, token=user.token), 403)
    assert_problem(await api.call("PATCH", "activity_service", path, json={"name": "x"}), 401)
    assert_problem(await api.call("DELETE", "activity_service", path), 401, "unauthorized")
    assert (await api.call("GET", "activity_service", path)).body["name"] == activity["name"]


async def test_delete(api):
    activity = await api.create_activity()
    admin = await api.admin_token()
    path = f"/activities/{activity['id']}"
    reply = await api.call("DELETE", "activity_service", path, token=admin)
    assert reply.status == 204 and not reply.body, reply
    assert_problem(await api.call("GET", "activity_service", path), 404, "not_found")
    assert_problem(await api.call("DELETE", "activity_service", path, token=admin), 404)


async def test_delete_with_orders_is_409(api):
    activity = await api.create_activity(stock=3)
    buyer = await api.new_user()
    assert (await api.seckill(activity["id"], buyer.token)).status == 201
    admin = await api.admin_token()
    path = f"/activities/{activity['id']}"
    assert_problem(
        await api.call("DELETE", "activity_service", path, token=admin), 409, "has_orders"
    )
    assert (await api.call("GET", "activity_service", path)).status == 200


async def test_seckill_201_then_200_with_the_same_order(api, stack):
    activity = await api.create_activity(stock=5, price="12.34")
    buyer = await api.new_user()
    first = await api.seckill(activity["id"], buyer.token)
    assert first.status == 201, first
    assert set(first.body) == ORDER_KEYS
    order = first.body
    assert order["activity_id"] == activity["id"] and order["user_id"] == buyer.id
    assert order["amount"] == "12.34" and order["status"] == "created"
    assert len(order["order_no"]) <= 32 and order["created_at"].endswith("Z")
    for _ in range(3):
        again = await api.seckill(activity["id"], buyer.token)
        assert again.status == 200 and again.body == order
    now = await api.call("GET", "activity_service", f"/activities/{activity['id']}")
    assert now.body["remaining"] == 4
    records = stack.query(
        "activity_service",
        "SELECT COUNT(*) AS n FROM seckill_records WHERE activity_id = %s",
        (activity["id"],),
    )
    assert records[0]["n"] == 1


async def test_seckill_concurrent_repeats_get_one_order(api):
    activity = await api.create_activity(stock=5)
    buyer = await api.new_user()
    replies = await asyncio.gather(*(api.seckill(activity["id"], buyer.token) for _ in range(20)))
    assert sorted(r.status for r in replies) == [200] * 19 + [201]
    assert len({r.body["order_no"] for r in replies}) == 1
    now = await api.call("GET", "activity_service", f"/activities/{activity['id']}")
    assert now.body["remaining"] == 4


async def test_seckill_sold_out_and_repeat_after(api):
    activity = await api.create_activity(stock=2)
    first, second, third = await api.new_users(3)
    orders = [await api.seckill(activity["id"], u.token) for u in (first, second)]
    assert [o.status for o in orders] == [201, 201]
    assert_problem(await api.seckill(activity["id"], third.token), 409, "sold_out")
    repeat = await api.seckill(activity["id"], first.token)
    assert repeat.status == 200 and repeat.body == orders[0].body


async def test_seckill_not_started(api):
    activity = await api.create_activity(**window(start_in=3600))
    buyer = await api.new_user()
    body = assert_problem(await api.seckill(activity["id"], buyer.token), 409, "not_started")
    assert str(activity["id"]) in body["detail"]


async def test_seckill_ended_and_repeat_after_end(api):
    starts = datetime.now(UTC) - timedelta(minutes=5)
    activity = await api.create_activity(
        stock=5, starts_at=iso(starts), ends_at=iso(starts + timedelta(hours=1))
    )
    holder, late = await api.new_users(2)
    order = await api.seckill(activity["id"], holder.token)
    assert order.status == 201
    admin = await api.admin_token()
    reply = await api.call(
        "PATCH",
        "activity_service",
        f"/activities/{activity['id']}",
        token=admin,
        json={"ends_at": iso(datetime.now(UTC) - timedelta(seconds=1))},
    )
    assert reply.status == 200 and reply.body["status"] == "ended", reply
    assert_problem(await api.seckill(activity["id"], late.token), 409, "ended")
    repeat = await api.seckill(activity["id"], holder.token)
    assert repeat.status == 200 and repeat.body == order.body


async def test_seckill_ended_wins_over_sold_out(api):
    activity = await api.create_activity(stock=0, **window(start_in=-7200, length=60))
    buyer = await api.new_user()
    assert_problem(await api.seckill(activity["id"], buyer.token), 409, "ended")


async def test_seckill_needs_a_user(api):
    activity = await api.create_activity()
    reply = await api.call("POST", "activity_service", f"/activities/{activity['id']}/seckill")
    assert_problem(reply, 401, "unauthorized")


async def test_seckill_ignores_a_body(api):
    activity = await api.create_activity(stock=1)
    buyer = await api.new_user()
    reply = await api.call(
        "POST",
        "activity_service",
        f"/activities/{activity['id']}/seckill",
        token=buyer.token,
        json={"user_id": 1, "quantity": 100},
    )
    assert reply.status == 201 and reply.body["user_id"] == buyer.id, reply
    now = await api.call("GET", "activity_service", f"/activities/{activity['id']}")
    assert now.body["remaining"] == 0


async def test_a_sold_out_activity_that_ends_answers_ended(api):
    """Once the end has passed, newcomers hear `ended`, even right after it sold out."""
    holder, *late = await api.new_users(6)
    ends = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=6)
    activity = await api.create_activity(
        stock=1, starts_at=iso(ends - timedelta(hours=1)), ends_at=iso(ends)
    )
    assert (await api.seckill(activity["id"], holder.token)).status == 201
    answers = []
    for attempt in range(600):  # keep asking while the end passes
        sent = datetime.now(UTC)
        reply = await api.seckill(activity["id"], late[attempt % len(late)].token)
        answers.append((sent, reply.code))
        if sent > ends + timedelta(seconds=1.5):
            break
        await asyncio.sleep(0.05)
    assert answers[-1][0] > ends + timedelta(seconds=1.5), "ran out of attempts before the end"
    after_end = [code for sent, code in answers if sent > ends + timedelta(milliseconds=50)]
    before_end = [code for sent, code in answers if sent < ends - timedelta(milliseconds=50)]
    assert set(after_end) == {"ended"}, answers
    assert set(before_end) <= {"sold_out"}, answers
