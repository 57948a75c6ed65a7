"""common.db against a real MySQL database: scripts, transactions without a separate BEGIN."""

from __future__ import annotations

import pymysql
import pytest

from common.config import Settings
from common.db import run_script, values_rows
from deployment.stack import mysql_connect, scratch_database


def make_table(settings: Settings) -> None:
    with mysql_connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{settings.database}`")
        cur.execute(f"CREATE TABLE `{settings.database}`.t (id INT PRIMARY KEY, v VARCHAR(40))")


@pytest.fixture
async def db():
    async with scratch_database("order_service", make_table) as database:
        yield database


def test_values_rows():
    assert values_rows(2, 3) == "(%s, %s, %s), (%s, %s, %s)"
    with pytest.raises(ValueError):
        values_rows(0, 3)


async def test_a_script_gives_one_result_per_statement(db):
    async def work(cur):
        return await run_script(
            cur,
            [
                ("START TRANSACTION", ()),
                (
                    "INSERT INTO t (id, v) VALUES " + values_rows(2, 2),
                    (1, "a'); DROP TABLE t; --", 2, "b"),
                ),
                ("UPDATE t SET v = %s WHERE id > %s", ("c", 1)),
                ("SELECT id, v FROM t ORDER BY id", ()),
            ],
        )

    results = await db.transaction(work, scripted=True)
    assert [r.rowcount for r in results[1:3]] == [2, 1]
    # Parameters are escaped, never spliced: the quote and the semicolon are data.
    assert results[3].rows == [{"id": 1, "v": "a'); DROP TABLE t; --"}, {"id": 2, "v": "c"}]


async def test_an_error_part_way_through_a_script_rolls_the_transaction_back(db):
    used: list[int] = []

    async def work(cur):
        used.append(cur.connection.thread_id())
        await run_script(
            cur,
            [
                ("START TRANSACTION", ()),
                ("INSERT INTO t (id, v) VALUES (%s, %s)", (7, "kept?")),
                ("INSERT INTO t (id, v) VALUES (%s, %s)", (7, "duplicate")),
                ("INSERT INTO t (id, v) VALUES (%s, %s)", (8, "never run")),
            ],
        )

    with pytest.raises(pymysql.err.IntegrityError):
        await db.transaction(work, scripted=True)
    assert await db.fetch_all("SELECT * FROM t") == []
    # Rolled back on the same connection, which went back to the pool with no
    # transaction open (one still open would have cost the pool that connection).
    again = await db.fetch_one("SELECT CONNECTION_ID() AS id")
    assert again["id"] == used[0]
    open_transactions = await db.fetch_one(
        "SELECT COUNT(*) AS n FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = %s",
        (used[0],),
    )
    assert open_transactions["n"] == 0
    assert await db.execute("INSERT INTO t (id, v) VALUES (%s, %s)", (9, "ok")) == 1
    assert await db.fetch_all("SELECT id FROM t") == [{"id": 9}]
