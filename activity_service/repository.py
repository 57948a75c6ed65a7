"""All of activity_service's SQL.

Functions taking a cursor run inside the caller's transaction; functions
returning a Script say what a seckill batch sends, and the batch decides when
its transaction begins and ends (docs/seckill.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from common.db import Cursor, Database, Result, Script, placeholders, values_rows
from common.formats import iso

ACTIVITY_COLUMNS = (
    "SELECT id, name, product_name, price, stock, remaining, starts_at, ends_at, "
    "pay_within_seconds, challenge, challenge_difficulty FROM activities "
)
RECORD_COLUMNS = (
    "SELECT activity_id, user_id, order_no, amount, created_at, expires_at, released_as "
    "FROM seckill_records "
)


# Activities


async def insert_activity(db: Database, values: dict[str, Any], now: datetime) -> int:
    async def work(cur: Cursor) -> int:
        await cur.execute(
            "INSERT INTO activities (name, product_name, price, stock, remaining, starts_at, "
            "ends_at, pay_within_seconds, released, created_at, updated_at, challenge, "
            "challenge_difficulty) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, %s, %s, %s, %s)",
            (
                values["name"],
                values["product_name"],
                values["price"],
                values["stock"],
                values["stock"],
                values["starts_at"],
                values["ends_at"],
                values["pay_within_seconds"],
                now,
                now,
                values["challenge"],
                values["challenge_difficulty"],
            ),
        )
        return cur.lastrowid

    return await db.transaction(work, name="insert_activity")


async def get_activity(db: Database, activity_id: int) -> dict | None:
    return await db.fetch_one(ACTIVITY_COLUMNS + "WHERE id = %s", (activity_id,))


async def challenge_rule(db: Database, activity_id: int) -> dict | None:
    """Whether the activity asks for a challenge, how hard, and when it starts."""
    return await db.fetch_one(
        "SELECT challenge, challenge_difficulty, starts_at FROM activities WHERE id = %s",
        (activity_id,),
    )


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
        "pay_within_seconds",
        "updated_at",
        "challenge",
        "challenge_difficulty",
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


def _split_activity_and_holders(
    activity_id: int, rows: Sequence[dict]
) -> tuple[dict | None, list[dict]]:
    if not rows:
        return None, []
    first = rows[0]
    activity = {
        key: first[key]
        for key in (
            "id",
            "price",
            "stock",
            "remaining",
            "starts_at",
            "ends_at",
            "pay_within_seconds",
            "released",
        )
    }
    records = [
        {
            "activity_id": activity_id,
            "user_id": row["user_id"],
            "order_no": row["order_no"],
            "amount": row["amount"],
            "created_at": row["ordered_at"],
            "expires_at": row["expires_at"],
            "released_as": row["released_as"],
        }
        for row in rows
        if row["user_id"] is not None
    ]
    return activity, records


def activity_and_holders(
    activity_id: int, user_ids: Sequence[int], lock_stock: bool = False
) -> Script[tuple[dict | None, list[dict]]]:
    """The activity, and the records of those of user_ids who hold one.

    lock_stock: first lock the activity row and read what is really left (a
    locking read sees the latest committed row, whatever the snapshot); the lock
    is then held until the transaction ends.
    """
    read = (
        "SELECT a.id, a.price, a.stock, a.remaining, a.starts_at, a.ends_at, "
        "a.pay_within_seconds, a.released, r.user_id, r.order_no, r.amount, "
        "r.created_at AS ordered_at, r.expires_at, r.released_as "
        "FROM activities a LEFT JOIN seckill_records r "
        "ON r.activity_id = a.id AND r.user_id IN " + placeholders(len(user_ids)) + " "
        "WHERE a.id = %s",
        (*user_ids, activity_id),
    )
    if not lock_stock:
        return Script(
            [read], lambda results: _split_activity_and_holders(activity_id, results[0].rows)
        )
    lock = ("SELECT remaining FROM activities WHERE id = %s FOR UPDATE", (activity_id,))

    def with_locked_stock(results: list[Result]) -> tuple[dict | None, list[dict]]:
        locked, joined = results
        activity, holders = _split_activity_and_holders(activity_id, joined.rows)
        if activity is not None:
            activity["remaining"] = locked.rows[0]["remaining"]
        return activity, holders

    return Script([lock, read], with_locked_stock)


TAKE_STOCK = "UPDATE activities SET remaining = remaining - %s WHERE id = %s AND remaining >= %s"


def _insert_if_granted(
    table: str, columns: tuple[str, ...], records: Sequence[dict]
) -> tuple[str, tuple]:
    """One multi-row INSERT whose rows go in only if @seckill_granted = 1.

    The rows are selected from a derived table, not VALUES, so that they can
    carry the condition.
    """
    values = tuple(r[column] for r in records for column in columns)
    first = "SELECT " + ", ".join(f"%s AS {column}" for column in columns)
    rest = " UNION ALL SELECT " + ", ".join(["%s"] * len(columns))
    rows = first + rest * (len(records) - 1)
    # Table and columns are this module's own constants, never input.
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT * FROM ({rows}) AS batch WHERE @seckill_granted = 1",
        values,
    )


def place_orders(activity_id: int, records: Sequence[dict]) -> Script[int | None]:
    """Take the stock of these records, and insert them and their outbox rows.

    The rows go in only if the conditional UPDATE took the stock (the session
    variable holds its row count), so the script never stores an order without
    its unit. Reads what remains afterwards, or None when less was left than
    asked (nothing stored).
    """
    wanted = len(records)
    statements = [
        (TAKE_STOCK, (wanted, activity_id, wanted)),
        ("SET @seckill_granted = ROW_COUNT()", ()),
        _insert_if_granted(
            "seckill_records",
            ("activity_id", "user_id", "order_no", "amount", "created_at", "expires_at"),
            records,
        ),
        _insert_if_granted("outbox", ("order_no", "created_at"), records),
        # After our own UPDATE this reads the row's latest version, under our lock.
        ("SELECT remaining FROM activities WHERE id = %s", (activity_id,)),
    ]

    def remaining(results: list[Result]) -> int | None:
        taken, _, records_in, outbox_in, left = results
        if taken.rowcount != 1:
            return None
        if records_in.rowcount != wanted or outbox_in.rowcount != wanted:
            # Cannot happen while both INSERTs hang on the same UPDATE; if a change to the
            # script ever broke that, fail loudly rather than answer for missing rows.
            raise RuntimeError(
                f"stock for {wanted} orders taken but {records_in.rowcount} records and "
                f"{outbox_in.rowcount} outbox rows stored"
            )
        return left.rows[0]["remaining"]

    return Script(statements, remaining)


async def records_after(db: Database, activity_id: int, after_user: int, limit: int) -> list[dict]:
    """A page of the activity's records, by user id (keyset paging on the unique key)."""
    return await db.fetch_all(
        RECORD_COLUMNS + "WHERE activity_id = %s AND user_id > %s ORDER BY user_id LIMIT %s",
        (activity_id, after_user, limit),
    )


# The outbox


async def undelivered(db: Database, older_than: datetime, limit: int) -> list[dict]:
    return await db.fetch_all(
        "SELECT r.activity_id, r.user_id, r.order_no, r.amount, r.created_at, r.expires_at, "
        "r.released_as FROM outbox o JOIN seckill_records r ON r.order_no = o.order_no "
        "WHERE o.created_at <= %s ORDER BY o.created_at LIMIT %s",
        (older_than, limit),
    )


async def mark_delivered(db: Database, order_nos: Sequence[str]) -> None:
    # One statement: atomic without a transaction around it.
    await db.execute(
        "DELETE FROM outbox WHERE order_no IN " + placeholders(len(order_nos)),  # noqa: S608
        sorted(order_nos),
        name="mark_delivered",
    )


# Releases: units that order_service gives back (cancelled or expired orders)


async def apply_releases(cur: Cursor, releases: dict[str, str], now: datetime) -> list[dict]:
    """Mark these records released (order_no -> 'cancelled' | 'expired') and put their units
    back; records released already are left alone. Returns the records released now.

    The records are locked first, in order_no order, so that repeats of the same
    release wait for each other instead of both giving the unit back.
    """
    order_nos = sorted(releases)
    await cur.execute(
        "SELECT order_no, activity_id, user_id FROM seckill_records "  # noqa: S608
        "WHERE order_no IN " + placeholders(len(order_nos)) + " AND released_as IS NULL "
        "ORDER BY order_no FOR UPDATE",
        order_nos,
    )
    released = list(await cur.fetchall())
    per_activity: dict[int, int] = {}
    for record in released:
        await cur.execute(
            "UPDATE seckill_records SET released_as = %s, released_at = %s WHERE order_no = %s",
            (releases[record["order_no"]], now, record["order_no"]),
        )
        per_activity[record["activity_id"]] = per_activity.get(record["activity_id"], 0) + 1
    for activity_id, units in sorted(per_activity.items()):
        given_back = await cur.execute(
            "UPDATE activities SET remaining = remaining + %s, released = released + %s "
            "WHERE id = %s AND remaining + %s <= stock",
            (units, units, activity_id, units),
        )
        if given_back != 1:
            # Would put remaining above stock: the books are already wrong; store nothing.
            raise RuntimeError(f"releasing {units} units of activity {activity_id} overflows stock")
    return released


# Metrics (activity_service/probes.py)


async def outbox_backlog(db: Database) -> dict:
    """Outbox rows and the age in microseconds of the oldest, by the database's clock."""
    return await db.fetch_one(
        "SELECT COUNT(*) AS backlog, "
        "TIMESTAMPDIFF(MICROSECOND, MIN(created_at), UTC_TIMESTAMP(6)) AS oldest_us FROM outbox"
    )


async def remaining_on_sale(db: Database, limit: int) -> list[dict]:
    """id and remaining of the newest activities on sale now, at most limit."""
    return await db.fetch_all(
        "SELECT id, remaining FROM activities "
        "WHERE starts_at <= UTC_TIMESTAMP(6) AND ends_at > UTC_TIMESTAMP(6) "
        "ORDER BY id DESC LIMIT %s",
        (limit,),
    )


# The sale dashboard (activity_service/dashboard.py)


async def sale_state(db: Database, activity_id: int) -> dict | None:
    row = await db.fetch_one(
        "SELECT id, name, stock, remaining, released, starts_at, ends_at FROM activities "
        "WHERE id = %s",
        (activity_id,),
    )
    if row is not None:
        row["starts_at"], row["ends_at"] = iso(row["starts_at"]), iso(row["ends_at"])
    return row


async def add_answer_counts(db: Database, rows: Sequence[tuple[int, int, str, int]]) -> None:
    """Add to the per-second counts: one statement, atomic without a transaction."""
    rows = sorted(rows)  # one lock order for concurrent workers
    await db.execute(
        "INSERT INTO dashboard_counts (activity_id, second, field, n) VALUES "  # noqa: S608
        + values_rows(len(rows), 4)
        + " ON DUPLICATE KEY UPDATE n = n + VALUES(n)",
        tuple(value for row in rows for value in row),
        name="add_answer_counts",
    )


async def answer_counts(
    db: Database, activity_id: int, first: int, last: int
) -> dict[int, dict[str, int]]:
    rows = await db.fetch_all(
        "SELECT second, field, n FROM dashboard_counts "
        "WHERE activity_id = %s AND second BETWEEN %s AND %s",
        (activity_id, first, last),
    )
    counts: dict[int, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(int(row["second"]), {})[row["field"]] = int(row["n"])
    return counts


async def drop_answer_counts(db: Database, before: int) -> None:
    await db.execute(
        "DELETE FROM dashboard_counts WHERE second < %s", (before,), name="drop_answer_counts"
    )
