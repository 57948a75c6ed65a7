"""All of order_service's SQL.

Deadlines are compared with the database's clock (UTC_TIMESTAMP(6); sessions run in
UTC), in the pay, cancel and expiry statements alike, so that they race on one clock
and one row lock (docs/seckill.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from common.db import Cursor, Database, placeholders, values_rows

ORDER_COLUMNS = (
    "SELECT order_no, activity_id, user_id, amount, status, created_at, expires_at FROM orders "
)


async def insert_orders(db: Database, orders: Sequence[dict]) -> None:
    """Idempotent: an order_no already stored is left as it is (it may be paid by now)."""

    # One multi-row statement: atomic without a transaction around it. Sorted, so that
    # concurrent calls carrying some of the same orders take their locks in one order.
    orders = sorted(orders, key=lambda order: order["order_no"])
    await db.execute(
        "INSERT IGNORE INTO orders "  # noqa: S608
        "(order_no, activity_id, user_id, amount, status, created_at, expires_at) "
        "VALUES " + values_rows(len(orders), 7),
        tuple(
            value
            for o in orders
            for value in (
                o["order_no"],
                o["activity_id"],
                o["user_id"],
                o["amount"],
                "created",
                o["created_at"],
                o["expires_at"],
            )
        ),
        name="insert_orders",
    )


async def get_order(db: Database, order_no: str) -> dict | None:
    return await db.fetch_one(ORDER_COLUMNS + "WHERE order_no = %s", (order_no,))


async def list_orders(
    db: Database,
    activity_id: int | None,
    user_id: int | None,
    status: str | None,
    limit: int,
    offset: int,
) -> tuple[list[dict], int]:
    conditions, args = [], []
    for column, value in (("activity_id", activity_id), ("user_id", user_id), ("status", status)):
        if value is not None:
            conditions.append(column + " = %s")
            args.append(value)
    where = ("WHERE " + " AND ".join(conditions) + " ") if conditions else ""
    rows = await db.fetch_all(
        ORDER_COLUMNS + where + "ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s",
        (*args, limit, offset),
    )
    # where holds only fixed conditions with %s placeholders
    total = await db.fetch_one("SELECT COUNT(*) AS n FROM orders " + where, args)  # noqa: S608
    return rows, total["n"]


async def mark_paid(db: Database, order_no: str, user_id: int) -> bool:
    """One conditional UPDATE: it and the sweeper's locking read race on the row lock."""
    paid = await db.execute(
        "UPDATE orders SET status = 'paid', paid_at = UTC_TIMESTAMP(6) "
        "WHERE order_no = %s AND user_id = %s AND status = 'created' "
        "AND expires_at > UTC_TIMESTAMP(6)",
        (order_no, user_id),
        name="pay_order",
    )
    return paid == 1


async def _release(cur: Cursor, order_nos: Sequence[str], status: str, now: datetime) -> None:
    """The outbox rows that give these orders' units back, in the caller's transaction."""
    await cur.execute(
        "INSERT INTO release_outbox (order_no, status, created_at) VALUES "  # noqa: S608
        + values_rows(len(order_nos), 3),
        tuple(value for order_no in order_nos for value in (order_no, status, now)),
    )


async def cancel(db: Database, order_no: str, now: datetime) -> bool:
    """Cancel an unpaid order before its deadline, and write its release with it."""

    async def work(cur: Cursor) -> bool:
        cancelled = await cur.execute(
            "UPDATE orders SET status = 'cancelled', closed_at = UTC_TIMESTAMP(6) "
            "WHERE order_no = %s AND status = 'created' AND expires_at > UTC_TIMESTAMP(6)",
            (order_no,),
        )
        if cancelled == 1:
            await _release(cur, [order_no], "cancelled", now)
        return cancelled == 1

    return await db.transaction(work, name="cancel_order")


async def expire_due(db: Database, limit: int, now: datetime) -> list[str]:
    """Expire up to limit unpaid orders past their deadline, with their releases.

    SKIP LOCKED: sweepers in other workers and instances take other rows, and a
    row that a payment holds is passed over (it is paid, or found again next time).
    """

    async def work(cur: Cursor) -> list[str]:
        await cur.execute(
            "SELECT order_no FROM orders WHERE status = 'created' "
            "AND expires_at <= UTC_TIMESTAMP(6) ORDER BY expires_at LIMIT %s "
            "FOR UPDATE SKIP LOCKED",
            (limit,),
        )
        order_nos = [row["order_no"] for row in await cur.fetchall()]
        if order_nos:
            await cur.execute(
                "UPDATE orders SET status = 'expired', closed_at = UTC_TIMESTAMP(6) "  # noqa: S608
                "WHERE order_no IN " + placeholders(len(order_nos)),
                order_nos,
            )
            await _release(cur, order_nos, "expired", now)
        return order_nos

    return await db.transaction(work, name="expire_orders")


async def pending_releases(db: Database, older_than: datetime, limit: int) -> list[dict]:
    return await db.fetch_all(
        "SELECT order_no, status FROM release_outbox WHERE created_at <= %s "
        "ORDER BY created_at LIMIT %s",
        (older_than, limit),
    )


async def mark_released(db: Database, order_nos: Sequence[str]) -> None:
    # One statement: atomic without a transaction around it.
    await db.execute(
        "DELETE FROM release_outbox WHERE order_no IN " + placeholders(len(order_nos)),  # noqa: S608
        sorted(order_nos),
        name="mark_released",
    )


# Metrics (order_service/probes.py)


async def count_by_status(db: Database) -> dict[str, int]:
    rows = await db.fetch_all("SELECT status, COUNT(*) AS n FROM orders GROUP BY status")
    return {row["status"]: int(row["n"]) for row in rows}


async def releases_backlog(db: Database) -> dict:
    """Release outbox rows and the age in microseconds of the oldest."""
    return await db.fetch_one(
        "SELECT COUNT(*) AS backlog, TIMESTAMPDIFF(MICROSECOND, MIN(created_at), "
        "UTC_TIMESTAMP(6)) AS oldest_us FROM release_outbox"
    )


async def expiry_overdue(db: Database) -> dict:
    """How long, in microseconds, the oldest unpaid order is past its deadline (None: none)."""
    return await db.fetch_one(
        "SELECT TIMESTAMPDIFF(MICROSECOND, MIN(expires_at), UTC_TIMESTAMP(6)) AS overdue_us "
        "FROM orders WHERE status = 'created' AND expires_at <= UTC_TIMESTAMP(6)"
    )


async def states_of_activity(db: Database, activity_id: int) -> dict[str, int]:
    rows = await db.fetch_all(
        "SELECT status, COUNT(*) AS n FROM orders WHERE activity_id = %s GROUP BY status",
        (activity_id,),
    )
    return {row["status"]: int(row["n"]) for row in rows}
