"""The seckill's batch path on a real MySQL database: a recording Seckill, an activity, rows."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from activity_service import repository
from activity_service.seckill import Seckill
from common.db import Database
from common.formats import utcnow


class RecordingSeckill(Seckill):
    """The real Seckill, noting which users each batch carried."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: list[list[int]] = []

    async def _commit_batch(self, activity_id, state, user_ids, *args):
        self.batches.append(list(user_ids))
        return await super()._commit_batch(activity_id, state, user_ids, *args)


def new_seckill(db: Database, batch_max: int = 200) -> tuple[RecordingSeckill, list[list[dict]]]:
    deliveries: list[list[dict]] = []

    def deliver(orders: list[dict]) -> asyncio.Future:
        deliveries.append(orders)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    return RecordingSeckill(db, deliver, batch_max=batch_max, batch_wait_ms=0), deliveries


async def new_activity(
    db: Database, stock: int, start_in: float = -60, length: float = 3600, pay_within: int = 900
):
    starts = utcnow() + timedelta(seconds=start_in)
    values = {
        "name": "Batch",
        "product_name": "Mouse",
        "price": Decimal("9.50"),
        "stock": stock,
        "starts_at": starts,
        "ends_at": starts + timedelta(seconds=length),
        "pay_within_seconds": pay_within,
        "challenge": False,
        "challenge_difficulty": 50_000,
    }
    return await repository.insert_activity(db, values, utcnow())


async def rows(db: Database, sql: str, *args) -> list[dict]:
    return await db.fetch_all(sql, args)
