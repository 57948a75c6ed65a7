import aiohttp
import pytest

from tests.support.browser import browser  # noqa: F401  (a fixture: the browser tests')
from tests.support.factories import Api


@pytest.fixture
async def api(stack):
    async with aiohttp.ClientSession() as session:
        yield Api(stack, session)
