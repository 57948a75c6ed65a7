from pathlib import Path

import pytest
from sanic import Sanic

from testkit.stack import Stack
from tests.support.redis_server import ClusterServers, url_for
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


@pytest.fixture(scope="session")
def redis_cluster():
    """A Redis Cluster (3 primaries, 3 replicas) shared by the tests that leave it whole; each
    test keeps to its own key prefix. Started by the first test that asks for it."""
    cluster = ClusterServers()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_url(request) -> str:
    """REDIS_URL for the kind the test is parametrised with (indirect): one, cluster, none."""
    return url_for(request, request.param)
