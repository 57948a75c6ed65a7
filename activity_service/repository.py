"""All of activity_service's SQL. Functions taking a cursor run inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from common.db import Cursor, Database, placeholders

ACTIVITY_COLUMNS = (
    "SELECT id, name, product_name, price, stock, remaining, starts_at, ends_at FROM activities "
)
RECORD_COLUMNS = "SELECT activity_id, user_id, order_no, amount, created_at FROM seckill_records "


# Activities


async def insert_activity(db: Database, values: dict[str, Any], now: datetime) -> int:
    async def work(cur: Cursor) -> int:
        await cur.execute(
            "INSERT INTO activities (name, product_name, price, stock, remaining, starts_at, "
            "ends_at, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                values["name"],
                values["product_name"],
                values["price"],
                values["stock"],
                values["stock"],
                values["starts_at"],
                values["ends_at"],
                now,
                now,
            ),
        )
        return cur.lastrowid

    return await db.transaction(work, name="insert_activity")


async def get_activity(db: Database, activity_id: int) -> dict | None:
    return await db.fetch_one(ACTIVITY_COLUMNS + "WHERE id = %s", (activity_id,))


async def list_activities(db: Database, limit: int, offset: int) -> tuple[list[dict], int]:
    rows = await db.fetch_all(
        ACTIVITY_COLUMNS + "ORDER BY id DESC LIMIT %s OFFSET %s", (limit, offset)
    )
    total = await db.fetch_one("SELECT COUNT(*) AS n FROM activities")
    return rows, total["n"]


async def lock_activity(cur: Cursor, activity_id: int) -> dict | None:
    await cur.execute(ACTIVITY_COLUMNS + "WHERE id = %s FOR UPDATE", (activity_id,))
    return await cur.fetchone()


async def update_activity(cur: Cursor, activity_id: int, values: dict[str, Any]) -> None:
    # Column names come from this fixed list, never from the client.
    allowed = (
        "name",
        "product_name",
        "price",
        "stock",
        "remaining",
        "starts_at",
        "ends_at",
        "updated_at",
    )
    columns = [column for column in allowed if column in values]
    assignments = ", ".join(column + " = %s" for column in columns)
    await cur.execute(
        "UPDATE activities SET " + assignments + " WHERE id = %s",  # noqa: S608 fixed columns
        (*(values[column] for column in columns), activity_id),
    )


async def has_records(cur: Cursor, activity_id: int) -> bool:
    # A locking read sees every committed record, whatever the snapshot.
    await cur.execute(
        "SELECT 1 FROM seckill_records WHERE activity_id = %s LIMIT 1 LOCK IN SHARE MODE",
        (activity_id,),
    )
    return await cur.fetchone() is not None


async def delete_activity(cur: Cursor, activity_id: int) -> None:
    await cur.execute("DELETE FROM activities WHERE id = %s", (activity_id,))


# The seckill


async def activity_and_holders(
    cur: Cursor, activity_id: int, user_ids: Sequence[int]
) -> tuple[dict | None, list[dict]]:
    """The activity, and the records of those of user_ids who hold one, in one round trip."""
    await cur.execute(
        "SELECT a.id, a.price, a.stock, a.remaining, a.starts_at, a.ends_at, "
        "r.user_id, r.order_no, r.amount, r.created_at AS ordered_at "
        "FROM activities a LEFT JOIN seckill_records r "
        "ON r.activity_id = a.id AND r.user_id IN " + placeholders(len(user_ids)) + " "
        "WHERE a.id = %s",
        (*user_ids, activity_id),
    )
    rows = await cur.fetchall()
    if not rows:
        return None, []
    first = rows[0]
    activity = {
        key: first[key] for key in ("id", "price", "stock", "remaining", "starts_at", "ends_at")
    }
    records = [
        {
            "activity_id": activity_id,
            "user_id": row["user_id"],
            "order_no": row["order_no"],
            "amount": row["amount"],
            "created_at": row["ordered_at"],
        }
        for row in rows
        if row["user_id"] is not None
    ]
    return activity, records


async def take_stock(cur: Cursor, activity_id: int, wanted: int) -> int:
    """Decrement remaining by as much of wanted as there is; returns what was taken."""
    sql = "UPDATE activities SET remaining = remaining - %s WHERE id = %s AND remaining >= %s"
    await cur.execute(sql, (wanted, activity_id, wanted))
    if cur.rowcount == 1:
        return wanted
    # Less is left than asked: lock the row, read what is left, take exactly that.
    await cur.execute("SELECT remaining FROM activities WHERE id = %s FOR UPDATE", (activity_id,))
    row = await cur.fetchone()
    granted = min(wanted, row["remaining"]) if row else 0
    if granted > 0:
        await cur.execute(sql, (granted, activity_id, granted))
        if cur.rowcount != 1:
            raise RuntimeError("conditional stock update failed under a row lock")
    return granted


async def insert_records(cur: Cursor, records: Iterable[dict]) -> None:
    rows = [
        (r["activity_id"], r["user_id"], r["order_no"], r["amount"], r["created_at"])
        for r in records
    ]
    await cur.executemany(
        "INSERT INTO seckill_records (activity_id, user_id, order_no, amount, created_at) "
        "VALUES (%s, %s, %s, %s, %s)",
        rows,
    )
    await cur.executemany(
        "INSERT INTO outbox (order_no, created_at) VALUES (%s, %s)",
        [(row[2], row[4]) for row in rows],
    )


async def all_records(db: Database, activity_id: int) -> list[dict]:
    return await db.fetch_all(RECORD_COLUMNS + "WHERE activity_id = %s", (activity_id,))


# The outbox


async def undelivered(db: Database, older_than: datetime, limit: int) -> list[dict]:
    return await db.fetch_all(
        "SELECT r.activity_id, r.user_id, r.order_no, r.amount, r.created_at "
        "FROM outbox o JOIN seckill_records r ON r.order_no = o.order_no "
        "WHERE o.created_at <= %s ORDER BY o.created_at LIMIT %s",
        (older_than, limit),
    )


async def mark_delivered(db: Database, order_nos: Sequence[str]) -> None:
    async def work(cur: Cursor) -> None:
        await cur.execute(
            "DELETE FROM outbox WHERE order_no IN " + placeholders(len(order_nos)),  # noqa: S608
            order_nos,
        )

    await db.transaction(work, name="mark_delivered")
