"""Request bodies and query strings parsed by the same pydantic models that document them."""

from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from sanic import Request

from common.errors import MAX_LISTED_ERRORS, BadRequest, InvalidRequest

M = TypeVar("M", bound=BaseModel)


# Bodies shorter than this hold too few fields for the check below to save anything.
SCREENED_BODY_BYTES = 4096
EXTRA_FIELD = "Extra inputs are not permitted"  # pydantic's own message for one


def _field_errors(errors: list[dict]) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(part) for part in err["loc"]) or "body", "message": err["msg"]}
        for err in errors
    ]


def _refuse_many_unknown_fields(body: bytes, model: type[BaseModel]) -> None:
    """InvalidRequest for a JSON object with more unknown fields than a 422 lists, worked out
    from one plain parse: pydantic would make an error object for each (70,000 fields: some
    280 ms and 100 MB of them) only for all but a few to be left out of the answer."""
    if len(body) < SCREENED_BODY_BYTES or model.model_config.get("extra") != "forbid":
        return
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return  # pydantic says what is wrong with it
    if not isinstance(data, dict):
        return
    known = {name for name, info in model.model_fields.items()} | {
        info.alias for info in model.model_fields.values() if info.alias
    }
    unknown = [name for name in data if name not in known]
    if len(unknown) <= MAX_LISTED_ERRORS:
        return
    try:  # what the known fields alone get wrong
        model.model_validate_json(orjson.dumps({k: v for k, v in data.items() if k in known}))
        errors = []
    except ValidationError as exc:
        errors = _field_errors(exc.errors(include_url=False))
    listed = errors + [{"field": name, "message": EXTRA_FIELD} for name in unknown]
    raise InvalidRequest(listed[:MAX_LISTED_ERRORS], total=len(errors) + len(unknown))


def parse_body(request: Request, model: type[M]) -> M:
    body = request.body or b""
    if not body.strip():
        raise BadRequest("a JSON request body is required")
    _refuse_many_unknown_fields(body, model)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if any(err["type"] == "json_invalid" for err in errors):
            raise BadRequest("the request body is not valid JSON") from None
        raise InvalidRequest(_field_errors(errors[:MAX_LISTED_ERRORS]), total=len(errors)) from None


def parse_query(request: Request, model: type[M]) -> M:
    raw: dict[str, str] = {}
    for key, values in request.args.items():
        if len(values) > 1:
            raise InvalidRequest([{"field": key, "message": "give this parameter once"}])
        raw[key] = values[0]
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidRequest(_field_errors(exc.errors(include_url=False))) from None
