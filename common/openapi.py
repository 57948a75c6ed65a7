"""OpenAPI for every service: shared schemas, security schemes, and a Swagger UI served offline.

sanic-ext builds the document from the route decorators. Its Swagger page
normally loads its scripts from a CDN; here every asset comes from the
pinned `swagger-ui-py` package through `app.static`, so `/docs` works with
no internet access.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Awaitable, Callable
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, Field
from sanic import Request, Sanic
from sanic.response import HTTPResponse, file, json
from sanic_ext import openapi
from sanic_ext.extensions.http.extension import HTTPExtension
from sanic_ext.extensions.openapi import definitions
from sanic_ext.extensions.openapi.builders import OperationStore, SpecificationBuilder
from sanic_ext.extensions.openapi.extension import OpenAPIExtension
from sanic_ext.extensions.openapi.types import Schema

from common.auth import SERVICE_TOKEN_HEADER
from common.errors import PROBLEM_JSON, problem_body

T = TypeVar("T")

DOCS_PREFIX = "/docs"
SPEC_URI = "/openapi.json"
OPENAPI_VERSION = "3.1.0"
ASSETS_URI = f"{DOCS_PREFIX}/swagger-ui"
OAUTH2_REDIRECT = "/oauth2-redirect.html"
SWAGGER_TEMPLATE = Path(__file__).parent / "docs" / "swagger.html"
# The UI's start script, a file rather than inline so that /docs's CSP allows no inline script.
SWAGGER_INIT = Path(__file__).parent / "docs" / "swagger-init.js"

BEARER = "bearer"
SERVICE_TOKEN = "serviceToken"


class FieldError(BaseModel):
    field: str = Field(examples=["stock"])
    message: str = Field(examples=["Input should be greater than or equal to 0"])


class Problem(BaseModel):
    """RFC 9457 problem details, as every error is answered."""

    type: str = Field(examples=["about:blank"])
    title: str = Field(examples=["Conflict"])
    status: int = Field(examples=[409])
    detail: str = Field(examples=["activity 7 is sold out"])
    code: str = Field(examples=["sold_out"])
    errors: list[FieldError] | None = Field(
        None, description="with invalid_request: each field that failed and why (10 at most)"
    )
    error_count: int | None = Field(
        None, description="with invalid_request: how many failed, listed or not", examples=[1]
    )


class LocalGuarantee(BaseModel):
    meaning: str = Field(description="what holds instead, while Redis does not answer")
    error: str = Field(description="why: the last error Redis answered with")


class RedisHealth(BaseModel):
    """This worker's Redis (REDIS_URL set): which shared guarantees are local now."""

    mode: Literal["single", "cluster", "sentinel"]
    shared: list[str] = Field(description="guarantees kept in Redis, shared by every process")
    local: dict[str, LocalGuarantee] = Field(
        description="guarantees per process now (rate_limits, revocations, challenge_solutions,"
        " dashboard_counts): Redis is configured but does not answer"
    )


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="degraded: serving, with some shared guarantees per process (see redis)"
    )
    redis: RedisHealth | None = Field(None, description="absent without REDIS_URL")


class JsonSchema(Schema):
    """A JSON Schema kept exactly as pydantic wrote it (OpenAPI 3.1 speaks JSON Schema 2020-12)."""

    def guard(self, fields: dict[str, Any]) -> dict[str, Any]:
        return fields


def component(model: type[BaseModel]) -> Any:
    """A `$ref` to the model's schema under components/schemas, registered on first use."""
    return definitions.Component(model)


def json_body(model: type[BaseModel]) -> Callable[[T], T]:
    """A required JSON body; any route with a body can also be answered 413 and 415."""

    def document(handler: T) -> T:
        handler = openapi.body({"application/json": component(model)}, required=True)(handler)
        handler = problem_response(
            415, "unsupported_media_type: the body is not sent as application/json"
        )(handler)
        return problem_response(413, "payload_too_large: the body is over 1 MiB")(handler)

    return document


def json_response(status: int, model: type[BaseModel], description: str) -> Any:
    return openapi.response(status, {"application/json": component(model)}, description)


def text_response(status: int, media_type: str, description: str) -> Any:
    """A response that is text of media_type (an HTML page, the metrics, an event stream)."""
    return openapi.response(status, {media_type: JsonSchema(type="string")}, description)


def empty_response(status: int, description: str) -> Callable[[T], T]:
    """A response without a body (openapi.response would document one of any type)."""

    def document(handler: T) -> T:
        OperationStore()[handler].responses[status] = definitions.Response(
            status=status, description=description
        )
        return handler

    return document


def problem_response(status: int, description: str) -> Any:
    """An error answer; the description starts with its code (`sold_out, not_started or ended`)."""
    code = re.match(r"[a-z_]+", description).group()
    example = problem_body(status, code, description)
    content = {"schema": component(Problem), "example": example}
    return openapi.response(status, {PROBLEM_JSON: content}, description)


def path_parameter(name: str, schema: dict[str, Any], description: str) -> Any:
    return openapi.parameter(
        name, JsonSchema(**schema), "path", description=description, required=True
    )


def query_parameters(model: type[BaseModel]) -> Callable[[T], T]:
    """Document each field of the model that parse_query validates the query string with."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    decorators = [
        openapi.parameter(
            name,
            JsonSchema(**_without_null(prop)),
            "query",
            description=prop.get("description"),
            required=name in required,
        )
        for name, prop in schema["properties"].items()
    ]

    def document(handler: T) -> T:
        for decorator in decorators:
            handler = decorator(handler)
        return handler

    return document


def omit_nulls(schema: dict[str, Any]) -> None:
    """json_schema_extra for patch models: a field may be left out, but null is refused."""
    for name, prop in schema["properties"].items():
        schema["properties"][name] = _without_null(prop)


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is either absent or a value: `X | None` documents as X."""
    variants = [v for v in prop.get("anyOf", ()) if v.get("type") != "null"]
    if len(variants) != 1:
        return prop
    rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    return {**variants[0], **rest}


def swagger_ui_assets() -> tuple[Path, str]:
    """The directory holding the pinned Swagger UI files, and the package version naming it."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static", version("swagger-ui-py")


def setup_openapi(app: Sanic, internal: bool = False) -> None:
    """Swagger UI at /docs from local assets, the document at /docs/openapi.json.

    `internal`: the app has endpoints for services, behind the shared service credential.
    """
    assets, assets_version = swagger_ui_assets()
    # sanic-ext reads these once, when the app is extended just below.
    app.config.OAS_URL_PREFIX = DOCS_PREFIX
    app.config.OAS_UI_DEFAULT = "swagger"
    app.config.OAS_UI_REDOC = False
    app.config.OAS_UI_SWAGGER = True
    app.config.OAS_UI_SWAGGER_HTML_TITLE = f"{app.config.get('API_TITLE', app.name)} API"
    app.config.OAS_UI_SWAGGER_CDN_URL = ASSETS_URI
    app.config.OAS_UI_SWAGGER_VERSION = assets_version
    app.config.OAS_PATH_TO_SWAGGER_HTML = str(SWAGGER_TEMPLATE)
    app.config.OAS_UI_SWAGGER_OAUTH2_REDIRECT = OAUTH2_REDIRECT
    app.config.SWAGGER_UI_CONFIGURATION = {
        "docExpansion": "list",
        "apisSorter": "alpha",
        "operationsSorter": "alpha",
    }
    # Of sanic-ext, only what we use: the OpenAPI document with Swagger UI, and the
    # automatic OPTIONS/HEAD. Its dependency injection would dispatch a signal on
    # every request, and CORS would add headers to every response, for no client of
    # ours: Swagger UI is served from the service's own origin.
    app.config.CORS = False
    app.extend(built_in_extensions=False, extensions=[HTTPExtension, OpenAPIExtension])

    app.ext.openapi.add_security_scheme(
        BEARER,
        "http",
        scheme="bearer",
        bearer_format="JWT",
        description="an access_token from user_service's POST /tokens",
    )
    if internal:
        app.ext.openapi.add_security_scheme(
            SERVICE_TOKEN,
            "apiKey",
            location="header",
            name=SERVICE_TOKEN_HEADER,
            description="the credential services share for internal endpoints (SERVICE_TOKEN)",
        )
    app.static(f"{ASSETS_URI}/{assets_version}", assets, name="swagger_ui_assets")
    app.static(f"{DOCS_PREFIX}/swagger-init.js", SWAGGER_INIT, name="swagger_ui_init")
    oauth2_page = assets / "oauth2-redirect.html"
    # sanic-ext's own handlers: the redirect page is fetched from a CDN on each call, and
    # the document's integer response codes are keys the app's orjson encoder refuses.
    _replace_handler(app, OAUTH2_REDIRECT, partial(_oauth2_redirect, page=oauth2_page))
    _replace_handler(app, SPEC_URI, _document)


def live_examples(app: Sanic, schema: str, make: Callable[[], dict[str, Any]]) -> None:
    """Examples of schema's fields made each time the document is served: make() -> {field: ...}.

    For values that go stale, such as a sale window that must contain the moment of reading.
    """
    app.ctx.openapi_live_examples = {**getattr(app.ctx, "openapi_live_examples", {}), schema: make}


async def _oauth2_redirect(request: Request, page: Path) -> HTTPResponse:
    return await file(page, mime_type="text/html")


async def _document(request: Request) -> HTTPResponse:
    app = request.app
    if getattr(app.ctx, "openapi_document", None) is None:
        document = SpecificationBuilder().build(app).serialize()
        # The schemas are pydantic's JSON Schema 2020-12, which is OpenAPI 3.1's dialect.
        document["openapi"] = OPENAPI_VERSION
        app.ctx.openapi_document = document
    schemas = app.ctx.openapi_document.get("components", {}).get("schemas", {})
    for schema, make in getattr(app.ctx, "openapi_live_examples", {}).items():
        for field, example in make().items():
            schemas[schema]["properties"][field]["examples"] = [example]
    return json(
        app.ctx.openapi_document,
        dumps=partial(orjson.dumps, option=orjson.OPT_NON_STR_KEYS),
    )


def _replace_handler(app: Sanic, uri: str, handler: Callable[..., Awaitable[HTTPResponse]]) -> None:
    path = (DOCS_PREFIX + uri).strip("/")
    routes = [route for route in app.router.routes if route.path == path]
    if len(routes) != 1:
        raise RuntimeError(f"sanic-ext did not register /{path} as expected")
    routes[0].handler = handler
