"""Fixtures for tests against a real MySQL database."""

from __future__ import annotations

import pytest

from activity_service import models
from testkit.stack import scratch_database


@pytest.fixture
async def db():
    """activity_service's database, made by its own migrations, dropped afterwards."""
    async with scratch_database("activity_service", models.run_migrations) as database:
        yield database
