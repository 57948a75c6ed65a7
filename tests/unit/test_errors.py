"""Every failure becomes RFC 9457 problem+json with a stable code, never a stack trace."""

import orjson
import pytest
from sanic.exceptions import MethodNotAllowed, NotFound, PayloadTooLarge, SanicException

from activity_service.errors import ActivityNotFound, Ended, NotStarted, SoldOut
from common.errors import (
    PROBLEM_JSON,
    AppError,
    BadRequest,
    Conflict,
    Forbidden,
    InvalidRequest,
    PeerUnavailable,
    Unauthorized,
    problem_from_exception,
)
from order_service.service import NotPayable
from user_service.service import InvalidCredentials, UsernameTaken


def answer(exc: BaseException) -> tuple[int, dict, dict]:
    response = problem_from_exception(None, exc)
    headers = dict(response.headers) | {"content-type": response.content_type}
    return response.status, orjson.loads(response.body), headers


def check_shape(status: int, body: dict, headers: dict) -> None:
    assert set(body) >= {"type", "title", "status", "detail", "code"}
    assert body["type"] == "about:blank" and body["status"] == status
    assert headers.get("content-type") == PROBLEM_JSON


@pytest.mark.parametrize(
    "exc, status, code, title",
    [
        (BadRequest("no body"), 400, "bad_request", "Bad Request"),
        (Unauthorized(), 401, "unauthorized", "Unauthorized"),
        (InvalidCredentials("wrong"), 401, "invalid_credentials", "Unauthorized"),
        (Forbidden(), 403, "forbidden", "Forbidden"),
        (ActivityNotFound(7), 404, "not_found", "Not Found"),
        (Conflict(), 409, "conflict", "Conflict"),
        (UsernameTaken("taken"), 409, "username_taken", "Conflict"),
        (SoldOut(7), 409, "sold_out", "Conflict"),
        (NotStarted(7), 409, "not_started", "Conflict"),
        (Ended(7), 409, "ended", "Conflict"),
        (NotPayable("paid"), 409, "not_payable", "Conflict"),
        (
            PeerUnavailable("order_service is unavailable", peer="x"),
            503,
            "peer_unavailable",
            "Service Unavailable",
        ),
    ],
)
def test_app_errors(exc, status, code, title):
    got_status, body, headers = answer(exc)
    assert got_status == status
    check_shape(status, body, headers)
    assert body["code"] == code and body["title"] == title
    assert body["detail"] == str(exc)


def test_sold_out_reads_like_the_contract():
    _, body, _ = answer(SoldOut(7))
    assert body == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "activity 7 is sold out",
        "code": "sold_out",
    }


def test_an_app_error_without_detail_uses_the_status_phrase():
    class Teapot(AppError):
        status, code = 418, "teapot"

    status, body, _ = answer(Teapot())
    assert status == 418 and body["detail"] == "I'm a Teapot"


def test_validation_errors_list_each_field():
    errors = [{"field": "stock", "message": "must be >= 0"}, {"field": "price", "message": "x"}]
    status, body, headers = answer(InvalidRequest(errors))
    check_shape(422, body, headers)
    assert status == 422 and body["code"] == "invalid_request" and body["errors"] == errors


@pytest.mark.parametrize(
    "exc, status, code",
    [
        (NotFound("Requested URL /x not found"), 404, "not_found"),
        (PayloadTooLarge("Request body exceeds the size limit"), 413, "payload_too_large"),
        (SanicException("teapot", status_code=418), 418, "bad_request"),
    ],
)
def test_framework_errors(exc, status, code):
    got_status, body, headers = answer(exc)
    assert got_status == status
    check_shape(status, body, headers)
    assert body["code"] == code


def test_405_names_the_allowed_methods():
    exc = MethodNotAllowed("nope", method="PUT", allowed_methods=("POST", "GET"))
    status, body, headers = answer(exc)
    assert status == 405 and body["code"] == "method_not_allowed"
    assert headers["Allow"] == "GET, POST"


def test_framework_json_errors_are_worded_for_clients():
    status, body, _ = answer(SanicException("Failed when parsing body as json", status_code=400))
    assert status == 400 and body["detail"] == "the request body is not valid JSON"


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("secret connection string mysql://root:pw@db"),
        KeyError("password_hash"),
        ZeroDivisionError("division by zero"),
        SanicException("worker crashed: /srv/app/secret.py line 3", status_code=500),
    ],
)
def test_unexpected_errors_are_500_without_details(exc):
    status, body, headers = answer(exc)
    check_shape(500, body, headers)
    assert status == 500 and body["code"] == "internal_error"
    assert body["detail"] == "the server could not handle the request"
    text = orjson.dumps(body).decode()
    assert "secret" not in text and "password_hash" not in text and "Traceback" not in text
