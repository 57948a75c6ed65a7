"""Activity management rules: create, read, change and delete flash-sale activities."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from activity_service import repository
from activity_service.errors import (
    ActivityEnded,
    ActivityNotFound,
    ActivityStarted,
    HasOrders,
    StockBelowSold,
)
from activity_service.schemas import Activity, ActivityCreate, ActivityPage, ActivityPatch
from common.db import Cursor, Database, run_shielded
from common.errors import InvalidRequest
from common.formats import to_db, utcnow


def status_of(activity: dict, now: datetime) -> str:
    if now < activity["starts_at"]:
        return "upcoming"
    if now >= activity["ends_at"]:
        return "ended"
    if activity["remaining"] <= 0:
        return "sold_out"
    return "active"


def present(activity: dict, now: datetime | None = None) -> Activity:
    """An activity row as the API shows it, with its status as of now."""
    return Activity.model_validate(activity | {"status": status_of(activity, now or utcnow())})


# What a buyer was offered: fixed once the sale has started (docs/api.md, "Sale rules").
SALE_TERMS = ("stock", "price", "starts_at", "ends_at")


async def check_sale_terms(cur: Cursor, activity_id: int, current: dict, changes: dict, now):
    """Refuse a change that would reopen, restock or reprice a sale that has begun."""
    started = now >= current["starts_at"]
    fixed = [key for key in ("stock", "price", "starts_at") if key in changes]
    if fixed and started:
        raise ActivityStarted(
            f"activity {activity_id} has started; its {' and '.join(fixed)} cannot change"
        )
    if "ends_at" in changes and now >= current["ends_at"]:
        raise ActivityEnded(f"activity {activity_id} has ended; its ends_at cannot change")
    if fixed and await repository.has_records(cur, activity_id):
        # Not started but sold: an activity whose start was moved back before these rules.
        raise HasOrders(
            f"activity {activity_id} has orders; its {' and '.join(fixed)} cannot change"
        )


class ActivityService:
    def __init__(self, db: Database, on_change=None):
        self.db = db
        # Called with an activity id whenever its stock or window changes.
        self.on_change = on_change or (lambda activity_id: None)

    async def create(self, body: ActivityCreate) -> Activity:
        values = body.model_dump()
        values["starts_at"] = to_db(body.starts_at)
        values["ends_at"] = to_db(body.ends_at)
        activity_id = await repository.insert_activity(self.db, values, utcnow())
        return await self.get(activity_id)

    async def get(self, activity_id: int) -> Activity:
        activity = await repository.get_activity(self.db, activity_id)
        if activity is None:
            raise ActivityNotFound(activity_id)
        return present(activity)

    async def list(self, limit: int, offset: int) -> ActivityPage:
        rows, total = await repository.list_activities(self.db, limit, offset)
        now = utcnow()
        return ActivityPage(items=[present(row, now) for row in rows], total=total)

    async def update(self, activity_id: int, patch: ActivityPatch) -> Activity:
        changes: dict[str, Any] = patch.model_dump(exclude_unset=True)
        for key in (
            "name",
            "product_name",
            "price",
            "stock",
            "starts_at",
            "ends_at",
            "pay_within_seconds",
            "challenge",
            "challenge_difficulty",
        ):
            if key in changes and changes[key] is None:
                raise InvalidRequest([{"field": key, "message": "may not be null"}])
        for key in ("starts_at", "ends_at"):
            if key in changes:
                changes[key] = to_db(changes[key])

        async def work(cur: Cursor) -> None:
            current = await repository.lock_activity(cur, activity_id)
            if current is None:
                raise ActivityNotFound(activity_id)
            now = utcnow()
            for key in [k for k in SALE_TERMS if k in changes and changes[k] == current[k]]:
                del changes[key]  # the same value again (a client sending the whole object)
            if any(key in changes for key in SALE_TERMS):
                # Under the row lock: no seckill can take stock between this check and the
                # UPDATE, and has_records' locking read sees every committed record.
                await check_sale_terms(cur, activity_id, current, changes, now)
            if "stock" in changes:
                sold = current["stock"] - current["remaining"]
                if changes["stock"] < sold:
                    raise StockBelowSold(sold)
                changes["remaining"] = changes["stock"] - sold
            for key in ("challenge", "challenge_difficulty"):
                if key in changes and now >= current["starts_at"]:
                    raise ActivityStarted(f"activity {activity_id} has started; {key} is fixed")
            starts = changes.get("starts_at", current["starts_at"])
            ends = changes.get("ends_at", current["ends_at"])
            if ends <= starts:
                raise InvalidRequest([{"field": "ends_at", "message": "must be after starts_at"}])
            if changes:
                changes["updated_at"] = now
                await repository.update_activity(cur, activity_id, changes)

        await self._change(activity_id, work, "update_activity")
        return await self.get(activity_id)

    async def delete(self, activity_id: int) -> None:
        async def work(cur: Cursor) -> None:
            if await repository.lock_activity(cur, activity_id) is None:
                raise ActivityNotFound(activity_id)
            if await repository.has_records(cur, activity_id):
                raise HasOrders(f"activity {activity_id} has orders and cannot be deleted")
            await repository.delete_activity(cur, activity_id)

        await self._change(activity_id, work, "delete_activity")

    async def _change(self, activity_id: int, work, name: str) -> None:
        """Commit, then tell the seckill; shielded whole, so a client hanging up skips neither."""

        async def commit_and_announce() -> None:
            try:
                await self.db.transaction(work, name=name)
            finally:
                self.on_change(activity_id)

        await run_shielded(commit_and_announce())


class ReleaseService:
    """Units that order_service gives back, put on sale again (docs/seckill.md)."""

    def __init__(self, db: Database, on_release):
        self.db = db
        # Called with (activity_id, user_ids) once their units are back in MySQL.
        self.on_release = on_release

    async def apply(self, releases: dict[str, str]) -> int:
        async def work(cur: Cursor) -> list[dict]:
            return await repository.apply_releases(cur, releases, utcnow())

        async def commit_and_announce() -> None:
            released = await self.db.transaction(work, name="apply_releases")
            users: dict[int, list[int]] = {}
            for record in released:
                users.setdefault(record["activity_id"], []).append(record["user_id"])
            for activity_id, user_ids in users.items():
                self.on_release(activity_id, user_ids)

        await run_shielded(commit_and_announce())
        return len(releases)
