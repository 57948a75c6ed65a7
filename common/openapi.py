"""Shared OpenAPI pieces: the problem+json schema and the bearer scheme."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sanic import Sanic
from sanic_ext import openapi


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every error is answered."""

    type: str = Field(examples=["about:blank"])
    title: str = Field(examples=["Conflict"])
    status: int = Field(examples=[409])
    detail: str = Field(examples=["activity 7 is sold out"])
    code: str = Field(examples=["sold_out"])
    errors: list[FieldError] | None = None


def schema(model: type[BaseModel]) -> Any:
    """A model as a component of the document: its real JSON schema, referenced by name.

    Given the bare class, sanic-ext would describe the Python class (its methods
    and model_config) instead of what goes over the wire.
    """
    return openapi.Component(model)


def json_body(model: type[BaseModel]) -> Any:
    return openapi.body({"application/json": schema(model)}, required=True)


def problem_response(status: int, description: str) -> Any:
    return openapi.response(status, {"application/problem+json": schema(Problem)}, description)


def json_response(status: int, model: type[BaseModel], description: str) -> Any:
    return openapi.response(status, {"application/json": schema(model)}, description)


def setup_openapi(app: Sanic) -> None:
    app.ext.openapi.add_security_scheme(
        "bearer", "http", scheme="bearer", bearer_format="JWT",
        description="an access_token from user_service's POST /tokens",
    )
