"""Schemathesis against each running service's own OpenAPI document, with real tokens.

The fuzzing runs on a stack of its own: it creates, changes and deletes activities
and records internal orders at random, which other tests must never see.
"""

import json
import os
import urllib.request
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from testkit.stack import ADMIN, SERVICES
from tests.support.factories import window
from tests.support.stacks import make_stack

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]
# Bounded: a few examples per operation and mode, and no shrinking, which can run for minutes.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_MAX_EXAMPLES", "20")),
    phases=[Phase.explicit, Phase.generate],
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    report_multiple_bugs=False,
)
ADMIN_ONLY = {
    ("POST", "/activities"),
    ("PATCH", "/activities/{activity_id}"),
    ("DELETE", "/activities/{activity_id}"),
    ("PATCH", "/users/{user_id}"),
}


def post_json(url: str, body: dict, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory):
    stack = make_stack(tmp_path_factory, "fuzz")
    user = {"username": "fuzzer", "password": "quartz-Lantern-93"}
    post_json(stack.user_url + "/users", user)
    stack.tokens = {
        "user": post_json(stack.user_url + "/tokens", user)["access_token"],
        "admin": post_json(
            stack.user_url + "/tokens", {"username": ADMIN[0], "password": ADMIN[1]}
        )["access_token"],
    }
    # a few activities for the generated ids to find: active, upcoming and ended
    for start_in, length in ((-60, 3600), (3600, 3600), (-7200, 3600)):
        post_json(
            stack.activity_url + "/activities",
            {
                "name": "Fuzz",
                "product_name": "Widget",
                "price": "9.99",
                "stock": 5,
                **window(start_in, length),
            },
            stack.tokens["admin"],
        )
    yield stack
    stack.kill()
    stack.drop_databases()


def credentials(stack, case) -> dict[str, str]:
    """The admin token where only an admin may act, a user's elsewhere."""
    if case.operation.path == "/internal/orders":
        return {"X-Service-Token": stack.service_token}
    role = "admin" if (case.method.upper(), case.operation.path) in ADMIN_ONLY else "user"
    return {"Authorization": f"Bearer {stack.tokens[role]}"}


def check(stack, service: str, case, seen: Counter) -> None:
    response = case.call_and_validate(
        base_url=stack.url(service), headers=credentials(stack, case), checks=CHECKS, timeout=30
    )
    seen[response.status_code] += 1


def fuzz_operation(stack, service: str, operation, mode: GenerationMode, seen: Counter) -> None:
    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        check(stack, service, case, seen)

    run()


def fuzz(stack, service: str) -> tuple[list[str], dict[str, Counter]]:
    """Every operation, with data that fits its schema and data that does not."""
    schema = schemathesis.openapi.from_url(f"{stack.url(service)}/docs/openapi.json")
    failures, statuses = [], {}
    for result in schema.get_all_operations():
        operation = result.ok()
        name = f"{operation.method.upper()} {operation.path}"
        seen = statuses.setdefault(name, Counter())
        for mode in GenerationMode:
            try:
                fuzz_operation(stack, service, operation, mode, seen)
            except Unsatisfiable:
                pass  # an operation without inputs has no invalid ones
            except Exception as exc:  # a failed check, with a curl line to reproduce it
                failures.append(f"{name} ({mode}): {exc}")
    return failures, statuses


@pytest.mark.parametrize("service", SERVICES)
def test_service_keeps_to_its_own_document(fuzz_stack, service):
    failures, statuses = fuzz(fuzz_stack, service)

    assert not failures, "\n\n".join(failures)
    print(service, {name: dict(seen) for name, seen in statuses.items()})
    assert all(sum(seen.values()) > 0 for seen in statuses.values()), statuses
    # the tokens were real: some calls got past authentication and succeeded
    assert any(status < 300 for seen in statuses.values() for status in seen), statuses
