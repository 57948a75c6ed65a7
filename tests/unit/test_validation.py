"""parse_body / parse_query: the models that document a request also check it."""

from dataclasses import dataclass, field
from urllib.parse import parse_qs

import orjson
import pytest
from sanic.request import RequestParameters

from activity_service.schemas import ActivityCreate, ActivityPatch, PageQuery
from common.errors import MAX_LISTED_ERRORS, BadRequest, InvalidRequest
from common.validation import parse_body, parse_query
from order_service.schemas import OrderQuery
from user_service.schemas import Credentials


@dataclass
class RequestStub:
    """Just the two attributes the parsers read from a Sanic request."""

    body: bytes = b""
    args: RequestParameters = field(default_factory=RequestParameters)


def body(value) -> RequestStub:
    return RequestStub(body=value if isinstance(value, bytes) else orjson.dumps(value))


def query(text: str) -> RequestStub:
    return RequestStub(args=RequestParameters(parse_qs(text)))


def fields_of(exc: InvalidRequest) -> list[str]:
    return [error["field"] for error in exc.extra["errors"]]


def test_a_valid_body():
    parsed = parse_body(body({"username": "alice", "password": "password-1"}), Credentials)
    assert parsed.username == "alice" and parsed.password == "password-1"


@pytest.mark.parametrize("raw", [b"", b"   ", b"\n"])
def test_an_empty_body_is_400(raw):
    with pytest.raises(BadRequest, match="body is required"):
        parse_body(body(raw), Credentials)


@pytest.mark.parametrize("raw", [b"{", b"{'a': 1}", b"\xff", b'{"a": 1,}', b"[" * 10_000])
def test_malformed_json_is_400(raw):
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse_body(body(raw), Credentials)


def test_every_failing_field_is_listed():
    with pytest.raises(InvalidRequest) as info:
        parse_body(body({"username": "x", "password": 5, "admin": True}), Credentials)
    assert sorted(fields_of(info.value)) == ["admin", "password", "username"]
    assert all(error["message"] for error in info.value.extra["errors"])


@pytest.mark.parametrize("value", [[], "text", 3, None])
def test_a_body_that_is_not_an_object(value):
    with pytest.raises(InvalidRequest) as info:
        parse_body(body(value), Credentials)
    assert fields_of(info.value) == ["body"]


def test_a_cross_field_rule_is_reported():
    activity = {
        "name": "n",
        "product_name": "p",
        "price": "1.00",
        "stock": 1,
        "starts_at": "2026-01-02T00:00:00Z",
        "ends_at": "2026-01-01T00:00:00Z",
    }
    with pytest.raises(InvalidRequest) as info:
        parse_body(body(activity), ActivityCreate)
    assert "ends_at must be after starts_at" in info.value.extra["errors"][0]["message"]


def test_patch_leaves_unset_fields_out():
    patch = parse_body(body({"stock": 3}), ActivityPatch)
    assert patch.model_dump(exclude_unset=True) == {"stock": 3}


def test_query_defaults_and_values():
    assert parse_query(query(""), PageQuery).model_dump() == {"limit": 20, "offset": 0}
    assert parse_query(query("limit=100&offset=7"), PageQuery).model_dump() == {
        "limit": 100,
        "offset": 7,
    }
    orders = parse_query(query("activity_id=3&user_id=9"), OrderQuery)
    assert (orders.activity_id, orders.user_id, orders.limit) == (3, 9, 50)


@pytest.mark.parametrize(
    "text, field",
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
        ("limit=1&limit=2", "limit"),
        ("sort=name", "sort"),
    ],
)
def test_bad_queries_name_the_parameter(text, field):
    with pytest.raises(InvalidRequest) as info:
        parse_query(query(text), PageQuery)
    assert fields_of(info.value) == [field]


@pytest.mark.parametrize(
    "text, field",
    [
        ("limit=1001", "limit"),
        ("activity_id=0", "activity_id"),
        ("user_id=9223372036854775808", "user_id"),
        ("user_id=1%20OR%201%3D1", "user_id"),
    ],
)
def test_bad_order_queries(text, field):
    with pytest.raises(InvalidRequest) as info:
        parse_query(query(text), OrderQuery)
    assert fields_of(info.value) == [field]


@pytest.mark.parametrize("unknown", [11, 70_000])
def test_a_body_of_many_unknown_fields_lists_a_few_and_counts_them_all(unknown):
    data = {"username": "x", **{f"f{n:05d}": n for n in range(unknown)}}
    with pytest.raises(InvalidRequest) as refused:
        parse_body(body(data), Credentials)
    errors = refused.value.extra["errors"]
    # username's pattern, the missing password and every unknown field
    assert refused.value.extra["error_count"] == unknown + 2
    assert len(errors) == MAX_LISTED_ERRORS
    assert {e["field"] for e in errors[:2]} == {"username", "password"}
    assert errors[2] == {"field": "f00000", "message": "Extra inputs are not permitted"}


def test_a_few_errors_are_all_listed_and_counted():
    with pytest.raises(InvalidRequest) as refused:
        parse_body(body({"username": "x", "a": 1, "b": 2}), Credentials)
    assert refused.value.extra["error_count"] == len(refused.value.extra["errors"]) == 4


def test_any_422_lists_at_most_the_first_few_errors():
    errors = [{"field": f"f{n}", "message": "wrong"} for n in range(50)]
    refused = InvalidRequest(errors)
    assert refused.extra["errors"] == errors[:MAX_LISTED_ERRORS]
    assert refused.extra["error_count"] == 50
