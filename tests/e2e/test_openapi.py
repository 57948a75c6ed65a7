"""Each service's OpenAPI document is valid, complete, and lists exactly the routes it has."""

import re

import pytest
from openapi_spec_validator import validate

from testkit.stack import ROOT, SERVICES
from tests.support.routes import app_routes

# The documentation's own pages and assets are the only routes the document leaves out.
DOCS = "/docs"
TEXT_TYPES = {"text/plain", "text/html", "text/javascript", "text/event-stream"}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def operations(document: dict) -> list[tuple[str, str, dict]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


async def document_of(api, service: str) -> dict:
    reply = await api.call("GET", service, f"{DOCS}/openapi.json")
    assert reply.status == 200, reply
    assert reply.headers["Content-Type"].startswith("application/json")
    return reply.body


@pytest.mark.parametrize("service", SERVICES)
async def test_document_is_valid_openapi(api, service):
    document = await document_of(api, service)

    validate(document)  # raises on anything that is not valid OpenAPI
    assert document["openapi"].startswith("3.")


@pytest.mark.parametrize("service", SERVICES)
async def test_document_lists_every_route_and_only_those(api, stack, service):
    document = await document_of(api, service)
    routes = app_routes(service, stack.env)

    documented = {(method, path) for method, path, _ in operations(document)}
    served = {(m, p) for m, p in routes if p != DOCS and not p.startswith(DOCS + "/")}
    assert documented == served
    assert ("GET", "/health") in documented
    # the rule leaves out only the documentation itself, which the app does serve
    assert {("GET", DOCS), ("GET", f"{DOCS}/openapi.json")} <= routes


@pytest.mark.parametrize("service", SERVICES)
async def test_every_operation_is_described(api, service):
    document = await document_of(api, service)
    schemes = document["components"]["securitySchemes"]
    schemas = document["components"]["schemas"]

    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearer"]["description"],
    }
    for method, path, operation in operations(document):
        where = f"{method} {path}"
        assert operation.get("summary") and operation.get("tags"), where
        for name in re.findall(r"{(\w+)}", path):
            params = [p for p in operation.get("parameters", []) if p["name"] == name]
            assert params and params[0]["in"] == "path" and params[0]["required"], where
        for security in operation.get("security", []):
            assert set(security) <= set(schemes), where
        if "requestBody" in operation:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.removeprefix("#/components/schemas/") in schemas, where
        assert operation["responses"], where
        for status, response in operation["responses"].items():
            content = response.get("content", {})
            if int(status) >= 400:
                ref = content["application/problem+json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Problem", where
            elif int(status) == 204:
                assert "content" not in response, where
            elif set(content) <= TEXT_TYPES and content:
                # /metrics, the dashboard's page, script and event stream: text, not JSON
                assert all(c["schema"]["type"] == "string" for c in content.values()), where
            else:
                ref = content["application/json"]["schema"]["$ref"]
                assert ref.removeprefix("#/components/schemas/") in schemas, where


async def test_authenticated_operations_declare_their_scheme(api):
    secured = {}
    for service in SERVICES:
        for method, path, operation in operations(await document_of(api, service)):
            secured[(method, path)] = [
                scheme for security in operation.get("security", []) for scheme in security
            ]

    assert secured[("GET", "/users/me")] == ["bearer"]
    assert secured[("POST", "/activities")] == ["bearer"]
    assert secured[("POST", "/activities/{activity_id}/seckill")] == ["bearer"]
    assert secured[("GET", "/orders")] == ["bearer"]
    assert secured[("POST", "/internal/orders")] == ["serviceToken"]
    assert secured[("POST", "/users")] == secured[("GET", "/activities")] == []


async def test_documented_query_parameters_are_the_validating_model(api):
    document = await document_of(api, "order_service")
    params = {p["name"]: p for p in document["paths"]["/orders"]["get"]["parameters"]}

    assert set(params) == {"activity_id", "user_id", "status", "limit", "offset"}
    assert all(p["in"] == "query" and not p["required"] for p in params.values())
    assert params["limit"]["schema"]["minimum"] == 1
    assert params["limit"]["schema"]["maximum"] == 1000
    assert params["limit"]["schema"]["default"] == 50
    assert params["status"]["schema"]["enum"] == ["created", "paid", "cancelled", "expired"]
    # and the service enforces exactly those bounds
    token = await api.admin_token()
    for limit, status in (("0", 422), ("1", 200), ("1000", 200), ("1001", 422)):
        reply = await api.call("GET", "order_service", f"/orders?limit={limit}", token)
        assert reply.status == status, (limit, reply)


@pytest.mark.parametrize("service", SERVICES)
async def test_swagger_ui_loads_nothing_from_elsewhere(api, service):
    page = await api.call("GET", service, DOCS)
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    html = page.body

    assert "http" not in html  # no absolute URL: every asset is the service's own
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) >= 3
    for asset in assets:
        assert asset.startswith(DOCS + "/"), asset
        reply = await api.call("GET", service, asset)
        assert reply.status == 200, asset

    redirect = await api.call("GET", service, f"{DOCS}/oauth2-redirect.html")
    assert redirect.status == 200 and "swaggerUIRedirectOauth2" in redirect.body
    assert "http" not in redirect.body


def statuses_in_api_md(route: str) -> set[str]:
    """The statuses docs/api.md's table row for `route` ("POST /path") lists."""
    rows = [
        line
        for line in (ROOT / "docs" / "api.md").read_text().splitlines()
        if line.startswith(f"| `{route}`") or line.startswith(f"| `{route} ")
    ]
    assert len(rows) == 1, route
    answers = rows[0].rstrip(" |").rsplit("|", 1)[-1]
    return set(re.findall(r"\b[1-5]\d\d\b", answers))


@pytest.mark.parametrize(
    "route",
    [
        "POST /activities/{activity_id}/seckill",
        "GET /activities/{activity_id}/challenge",
        "GET /activities/{activity_id}/challenge/v1",
    ],
)
async def test_the_seckill_document_lists_every_status_api_md_lists(api, route):
    """A client generated from the document knows every answer the seckill may give."""
    document = await document_of(api, "activity_service")
    method, path = route.split(" ")
    documented = set(document["paths"][path][method.lower()]["responses"])
    assert statuses_in_api_md(route) <= documented, route
    assert "503" in documented, route
