"""Request bodies and query strings parsed by the same pydantic models that document them."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from sanic import Request

from common.errors import BadRequest, InvalidRequest

M = TypeVar("M", bound=BaseModel)


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(part) for part in err["loc"]) or "body", "message": err["msg"]}
        for err in exc.errors(include_url=False)
    ]


def parse_body(request: Request, model: type[M]) -> M:
    body = request.body or b""
    if not body.strip():
        raise BadRequest("a JSON request body is required")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise BadRequest("the request body is not valid JSON") from None
        raise InvalidRequest(_field_errors(exc)) from None


def parse_query(request: Request, model: type[M]) -> M:
    raw: dict[str, str] = {}
    for key, values in request.args.items():
        if len(values) > 1:
            raise InvalidRequest([{"field": key, "message": "give this parameter once"}])
        raw[key] = values[0]
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidRequest(_field_errors(exc)) from None
