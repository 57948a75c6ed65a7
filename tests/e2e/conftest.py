import aiohttp
import pytest

from tests.factories import Api


@pytest.fixture
async def api(stack):
    async with aiohttp.ClientSession() as session:
        yield Api(stack, session)
