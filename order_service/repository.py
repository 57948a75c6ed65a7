"""All of order_service's SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from common.db import Cursor, Database, values_rows

ORDER_COLUMNS = "SELECT order_no, activity_id, user_id, amount, status, created_at FROM orders "


async def insert_orders(db: Database, orders: Sequence[dict]) -> None:
    """Idempotent: an order_no already stored is left as it is (it may be paid by now)."""

    # One multi-row statement: atomic without a transaction around it. Sorted, so that
    # concurrent calls carrying some of the same orders take their locks in one order.
    orders = sorted(orders, key=lambda order: order["order_no"])
    await db.execute(
        "INSERT IGNORE INTO orders (order_no, activity_id, user_id, amount, status, created_at) "  # noqa: S608
        "VALUES " + values_rows(len(orders), 6),
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
            )
        ),
        name="insert_orders",
    )


async def get_order(db: Database, order_no: str) -> dict | None:
    return await db.fetch_one(ORDER_COLUMNS + "WHERE order_no = %s", (order_no,))


async def list_orders(
    db: Database, activity_id: int | None, user_id: int | None, limit: int, offset: int
) -> tuple[list[dict], int]:
    conditions, args = [], []
    if activity_id is not None:
        conditions.append("activity_id = %s")
        args.append(activity_id)
    if user_id is not None:
        conditions.append("user_id = %s")
        args.append(user_id)
    where = ("WHERE " + " AND ".join(conditions) + " ") if conditions else ""
    rows = await db.fetch_all(
        ORDER_COLUMNS + where + "ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s",
        (*args, limit, offset),
    )
    # where holds only fixed conditions with %s placeholders
    total = await db.fetch_one("SELECT COUNT(*) AS n FROM orders " + where, args)  # noqa: S608
    return rows, total["n"]


async def mark_paid(db: Database, order_no: str, user_id: int, now: datetime) -> bool:
    async def work(cur: Cursor) -> bool:
        await cur.execute(
            "UPDATE orders SET status = 'paid', paid_at = %s "
            "WHERE order_no = %s AND user_id = %s AND status = 'created'",
            (now, order_no, user_id),
        )
        return cur.rowcount == 1

    return await db.transaction(work, name="pay_order")
