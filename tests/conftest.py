from pathlib import Path

import pytest
from sanic import Sanic

from testkit.stack import Stack
from tests.support.stacks import make_stack

# Each layer is a directory and a marker: `pytest tests/app` or `pytest -m app`.
LAYERS = ("unit", "app", "integration", "e2e")
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        layer = item.path.relative_to(HERE).parts[0]
        if layer in LAYERS:
            item.add_marker(layer)


@pytest.fixture(scope="session", autouse=True)
def several_apps_per_process():
    """Tests build several apps of one name in one process; outside test mode Sanic refuses."""
    Sanic.test_mode = True
    yield
    Sanic.test_mode = False


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """One running stack shared by tests that leave the processes alone."""
    stack = make_stack(tmp_path_factory, "stack")
    yield stack
    stack.stop()
    stack.drop_databases()


@pytest.fixture
def own_stack(tmp_path_factory):
    """A stack of a test's own, for tests that kill or restart services."""
    stacks = []

    def start(**env: str) -> Stack:
        stacks.append(make_stack(tmp_path_factory, "own", **env))
        return stacks[-1]

    yield start
    for s in stacks:
        s.kill()
        s.drop_databases()
