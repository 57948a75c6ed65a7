"""common.db against a real MySQL database: scripts, and transactions sent as scripts."""

from __future__ import annotations

import pytest

from common.config import Settings
from common.db import IntegrityError, Script, ScriptedTransaction, values_rows
from testkit.stack import mysql_connect, scratch_database


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


def rows_of(results):
    return [r.rows for r in results]


async def test_a_script_gives_one_result_per_statement(db):
    async def work(tx: ScriptedTransaction):
        script = Script(
            [
                (
                    "INSERT INTO t (id, v) VALUES " + values_rows(2, 2),
                    (1, "a'); DROP TABLE t; --", 2, "b"),
                ),
                ("UPDATE t SET v = %s WHERE id > %s", ("c", 1)),
                ("SELECT id, v FROM t ORDER BY id", ()),
            ],
            lambda results: results,
        )
        results = await tx.begin(script)
        await tx.commit()
        return results

    results = await db.scripted_transaction(work)
    assert [r.rowcount for r in results[:2]] == [2, 1]
    # Parameters are escaped, never spliced: the quote and the semicolon are data.
    assert results[2].rows == [{"id": 1, "v": "a'); DROP TABLE t; --"}, {"id": 2, "v": "c"}]
    assert await db.fetch_all("SELECT id FROM t ORDER BY id") == [{"id": 1}, {"id": 2}]


async def test_the_commit_rides_on_the_last_script_and_ends_the_transaction(db):
    used: list[int] = []

    async def work(tx: ScriptedTransaction):
        used.append(await tx.begin(Script([("SELECT CONNECTION_ID() AS id", ())], first_id)))
        return await tx.commit(
            Script(
                [
                    ("INSERT INTO t (id, v) VALUES (%s, %s)", (3, "kept")),
                    ("SELECT @@in_transaction AS open", ()),
                ],
                lambda results: results[1].rows[0]["open"],
            )
        )

    assert await db.scripted_transaction(work) == 1  # still open just before the COMMIT
    assert await db.fetch_all("SELECT id, v FROM t") == [{"id": 3, "v": "kept"}]
    assert await open_transactions(db, used[0]) == 0


def first_id(results):
    return results[0].rows[0]["id"]


async def open_transactions(db, thread_id: int) -> int:
    row = await db.fetch_one(
        "SELECT COUNT(*) AS n FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = %s",
        (thread_id,),
    )
    return row["n"]


async def test_an_error_part_way_through_a_script_rolls_the_transaction_back(db):
    used: list[int] = []

    async def work(tx: ScriptedTransaction):
        used.append(await tx.begin(Script([("SELECT CONNECTION_ID() AS id", ())], first_id)))
        await tx.commit(
            Script(
                [
                    ("INSERT INTO t (id, v) VALUES (%s, %s)", (7, "kept?")),
                    ("INSERT INTO t (id, v) VALUES (%s, %s)", (7, "duplicate")),
                    ("INSERT INTO t (id, v) VALUES (%s, %s)", (8, "never run")),
                ],
                lambda results: None,
            )
        )

    with pytest.raises(IntegrityError):
        await db.scripted_transaction(work)
    assert await db.fetch_all("SELECT * FROM t") == []
    # Rolled back on the same connection, which went back to the pool with no
    # transaction open (one still open would have cost the pool that connection).
    again = await db.fetch_one("SELECT CONNECTION_ID() AS id")
    assert again["id"] == used[0]
    assert await open_transactions(db, used[0]) == 0
    assert await db.execute("INSERT INTO t (id, v) VALUES (%s, %s)", (9, "ok")) == 1
    assert await db.fetch_all("SELECT id FROM t") == [{"id": 9}]


async def test_a_transaction_its_owner_leaves_open_is_rolled_back_and_an_error(db):
    async def forgets_to_commit(tx: ScriptedTransaction):
        await tx.begin(Script([("INSERT INTO t (id, v) VALUES (%s, %s)", (5, "lost"))], rows_of))

    with pytest.raises(RuntimeError, match="left its transaction open"):
        await db.scripted_transaction(forgets_to_commit, name="forgetful")
    assert await db.fetch_all("SELECT * FROM t") == []


async def test_a_rollback_keeps_nothing_the_transaction_wrote(db):
    async def changes_its_mind(tx: ScriptedTransaction):
        await tx.begin(Script([("INSERT INTO t (id, v) VALUES (%s, %s)", (6, "undone"))], rows_of))
        await tx.rollback()
        return "done"

    assert await db.scripted_transaction(changes_its_mind) == "done"
    assert await db.fetch_all("SELECT * FROM t") == []
