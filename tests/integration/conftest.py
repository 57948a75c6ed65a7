"""Fixtures for tests against a real MySQL database."""

from __future__ import annotations

import os
import secrets

import pytest

from activity_service import models
from common.config import Settings
from common.db import Database
from tests.stack import mysql_connect


@pytest.fixture
async def db():
    """activity_service's database, made by its own migrations, dropped afterwards."""
    env = {**os.environ, "SECKILL_DB_PREFIX": "sktest_" + secrets.token_hex(4)}
    settings = Settings.from_env("activity_service", env | {"SERVICE_TOKEN": "unused"})
    models.run_migrations(settings)
    database = Database(settings)
    await database.connect()
    yield database
    await database.close()
    with mysql_connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{settings.database}`")
