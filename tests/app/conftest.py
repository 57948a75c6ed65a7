"""In-process fixtures: real MySQL, apps built from the factories, no service processes.

The databases are migrated once per session. Each test module gets fresh apps of the
three services, started once and stopped gracefully at its end, on the module's own
event loop (building and starting three apps costs about half a second, so one set per
test rather than per module would make this layer several times slower). Like the e2e
tests with their shared stack, tests make their own users and activities and assume
nothing about what else is in the tables.
"""

from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from pytest_asyncio import is_async_test

from tests.support.apps import Databases, InProcessStack
from tests.support.factories import Api

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    """Tests here run on their module's event loop, where the module's apps are served."""
    module_loop = pytest.mark.asyncio(loop_scope="module")
    for item in items:
        if is_async_test(item) and HERE in item.path.parents:
            item.add_marker(module_loop, append=False)


@pytest.fixture(scope="session")
def databases(tmp_path_factory):
    """One set of migrated databases for the session, dropped at its end."""
    databases = Databases(tmp_path_factory.mktemp("inprocess"))
    databases.migrate()
    yield databases
    databases.drop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(databases):
    """Fresh apps of the three services for this module, stopped gracefully after it."""
    async with InProcessStack(databases) as stack:
        yield stack


@pytest_asyncio.fixture(loop_scope="module")
async def api(stack):
    async with aiohttp.ClientSession() as session:
        yield Api(stack, session)
