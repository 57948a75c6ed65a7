"""All of activity_service's SQL.

Functions taking a cursor run inside the caller's transaction; functions
returning a Script say what a seckill batch sends, and the batch decides when
its transaction begins and ends (docs/seckill.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

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


class NewOrders(NamedTuple):
    """A batch's new orders, as presented, and what they share: the price and the times."""

    orders: list[dict]
    amount: Decimal
    created_at: datetime
    expires_at: datetime


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


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _split_activity_and_holders(
    activity_id: int, rows: Sequence[dict]
) -> tuple[dict | None, list[dict]]:
    """The read's one JSON value: the activity's columns, and its batch holders as arrays."""
    if not rows:
        return None, []
    sale = orjson.loads(rows[0]["sale"])
    activity = {
        "id": activity_id,
        "price": Decimal(sale["price"]),
        "stock": sale["stock"],
        "remaining": sale["remaining"],
        "starts_at": _timestamp(sale["starts_at"]),
        "ends_at": _timestamp(sale["ends_at"]),
        "pay_within_seconds": sale["pay_within_seconds"],
        "released": sale["released"],
    }
    records = [
        {
            "activity_id": activity_id,
            "user_id": user_id,
            "order_no": order_no,
            "amount": Decimal(amount),
            "created_at": _timestamp(created_at),
            "expires_at": _timestamp(expires_at),
            "released_as": released_as,
        }
        for user_id, order_no, amount, created_at, expires_at, released_as in sale["holders"] or ()
    ]
    return activity, records


# The batch's users, and its new orders, each go as ONE JSON parameter read with
# JSON_TABLE (MariaDB 10.6+, MySQL 8.0.4+; the same syntax in both): one string to
# escape and parse instead of a %s per value and a SELECT per row.
def activity_and_holders(
    activity_id: int, user_ids: Sequence[int], lock_stock: bool = False
) -> Script[tuple[dict | None, list[dict]]]:
    """The activity, and the records of those of user_ids who hold one.

    lock_stock: first lock the activity row and read what is really left (a
    locking read sees the latest committed row, whatever the snapshot); the lock
    is then held until the transaction ends.
    """
    # One JSON value, not a column each: every column costs the client a descriptor packet
    # to parse, and this read runs once per batch (docs/seckill.md).
    read = (
        "SELECT JSON_OBJECT('price', CAST(a.price AS CHAR), 'stock', a.stock, "
        "'remaining', a.remaining, 'starts_at', a.starts_at, 'ends_at', a.ends_at, "
        "'pay_within_seconds', a.pay_within_seconds, 'released', a.released, 'holders', "
        "(SELECT JSON_ARRAYAGG(JSON_ARRAY(r.user_id, r.order_no, CAST(r.amount AS CHAR), "
        "r.created_at, r.expires_at, r.released_as)) "
        "FROM JSON_TABLE(%s, '$[*]' COLUMNS (user_id BIGINT PATH '$')) AS batch "
        "JOIN seckill_records r ON r.activity_id = a.id AND r.user_id = batch.user_id)) AS sale "
        "FROM activities a WHERE a.id = %s",
        (orjson.dumps(list(user_ids)).decode(), activity_id),
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


# LAST_INSERT_ID(expr) hands what remains back in the UPDATE's own OK packet, the
# documented sequence idiom of MySQL and MariaDB: no SELECT, no result set to parse.
TAKE_STOCK = (
    "UPDATE activities SET remaining = LAST_INSERT_ID(remaining - %s) "
    "WHERE id = %s AND remaining >= %s"
)
INSERT_ORDERS = (
    "INSERT INTO seckill_records (activity_id, user_id, order_no, amount, created_at, "
    "expires_at) SELECT %s, batch.user_id, batch.order_no, %s, %s, %s FROM "
    "JSON_TABLE(%s, '$[*]' COLUMNS (user_id BIGINT PATH '$[0]', order_no VARCHAR(32) "
    "PATH '$[1]')) AS batch WHERE @seckill_granted = 1"
)


def place_orders(activity_id: int, batch: NewOrders) -> Script[int | None]:
    """Take the stock of these orders and insert their records, undelivered.

    The rows go in only if the conditional UPDATE took the stock (the session
    variable holds its row count), so the script never stores an order without
    its unit. Reads what remains afterwards, or None when less was left than
    asked (nothing stored).
    """
    wanted = len(batch.orders)
    pairs = orjson.dumps([(o["user_id"], o["order_no"]) for o in batch.orders]).decode()
    statements = [
        (TAKE_STOCK, (wanted, activity_id, wanted)),
        ("SET @seckill_granted = ROW_COUNT()", ()),
        (INSERT_ORDERS, (activity_id, batch.amount, batch.created_at, batch.expires_at, pairs)),
    ]

    def remaining(results: list[Result]) -> int | None:
        taken, _, records_in = results
        if taken.rowcount != 1:
            return None
        if records_in.rowcount != wanted:
            # Cannot happen while the INSERT hangs on the UPDATE; if a change to the
            # script ever broke that, fail loudly rather than answer for missing rows.
            raise RuntimeError(
                f"stock for {wanted} orders taken but {records_in.rowcount} records stored"
            )
        return taken.lastrowid  # what remains after our UPDATE, under our row lock

    return Script(statements, remaining)


async def records_after(db: Database, activity_id: int, after_user: int, limit: int) -> list[dict]:
    """A page of the activity's records, by user id (keyset paging on the unique key)."""
    return await db.fetch_all(
        RECORD_COLUMNS + "WHERE activity_id = %s AND user_id > %s ORDER BY user_id LIMIT %s",
        (activity_id, after_user, limit),
    )


# The outbox: the records not yet marked delivered


async def undelivered(db: Database, older_than: datetime, limit: int) -> list[dict]:
    return await db.fetch_all(
        RECORD_COLUMNS + "WHERE delivered_at IS NULL AND created_at <= %s "
        "ORDER BY created_at LIMIT %s",
        (older_than, limit),
    )


async def mark_delivered(db: Database, order_nos: Sequence[str]) -> None:
    # One statement: atomic without a transaction around it. Sorted: the records are
    # locked in order_no order, as apply_releases locks them.
    await db.execute(
        "UPDATE seckill_records r JOIN JSON_TABLE(%s, '$[*]' COLUMNS (order_no VARCHAR(32) "
        "PATH '$')) AS batch ON r.order_no = batch.order_no "
        "SET r.delivered_at = UTC_TIMESTAMP(6) WHERE r.delivered_at IS NULL",
        (orjson.dumps(sorted(order_nos)).decode(),),
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
    """Orders not yet delivered to order_service and the age in microseconds of the oldest,
    by the database's clock (the records are the outbox; the index on delivered_at answers)."""
    return await db.fetch_one(
        "SELECT COUNT(*) AS backlog, "
        "TIMESTAMPDIFF(MICROSECOND, MIN(created_at), UTC_TIMESTAMP(6)) AS oldest_us "
        "FROM seckill_records WHERE delivered_at IS NULL"
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


async def sale_orders(db: Database, activity_id: int) -> dict:
    """The activity's orders as this service recorded them: how many, the first and last
    (Unix time in seconds, to the microsecond), and the second with the most and how many."""
    totals = await db.fetch_one(
        "SELECT COUNT(*) AS orders, "
        "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', MIN(created_at)) AS first_us, "
        "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', MAX(created_at)) AS last_us "
        "FROM seckill_records WHERE activity_id = %s",
        (activity_id,),
    )
    peak = await db.fetch_one(
        "SELECT TIMESTAMPDIFF(SECOND, '1970-01-01', created_at) AS second, COUNT(*) AS n "
        "FROM seckill_records WHERE activity_id = %s GROUP BY second "
        "ORDER BY n DESC, second LIMIT 1",
        (activity_id,),
    )
    return {
        "orders": int(totals["orders"]),
        "first": totals["first_us"] / 1e6 if totals["first_us"] is not None else None,
        "last": totals["last_us"] / 1e6 if totals["last_us"] is not None else None,
        "peak_second": int(peak["second"]) if peak else None,
        "peak_orders": int(peak["n"]) if peak else 0,
    }


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
