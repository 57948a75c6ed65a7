"""Order rules: who may read and pay which order."""

from __future__ import annotations

from common.auth import Principal
from common.db import Database
from common.errors import Conflict, Forbidden, NotFound
from common.formats import iso, money, to_db, utcnow
from order_service import repository
from order_service.schemas import NewOrder


class NotPayable(Conflict):
    code = "not_payable"


def present(order: dict) -> dict:
    return {
        "order_no": order["order_no"],
        "activity_id": order["activity_id"],
        "user_id": order["user_id"],
        "amount": money(order["amount"]),
        "status": order["status"],
        "created_at": iso(order["created_at"]),
    }


class OrderService:
    def __init__(self, db: Database):
        self.db = db

    async def accept(self, orders: list[NewOrder]) -> int:
        rows = [order.model_dump() | {"created_at": to_db(order.created_at)} for order in orders]
        await repository.insert_orders(self.db, rows)
        return len(rows)

    async def list(
        self,
        viewer: Principal,
        activity_id: int | None,
        user_id: int | None,
        limit: int,
        offset: int,
    ) -> dict:
        if not viewer.is_admin:
            if user_id is not None and user_id != viewer.user_id:
                raise Forbidden("you may only list your own orders")
            user_id = viewer.user_id
        rows, total = await repository.list_orders(self.db, activity_id, user_id, limit, offset)
        return {"items": [present(row) for row in rows], "total": total}

    async def get(self, viewer: Principal, order_no: str) -> dict:
        order = await repository.get_order(self.db, order_no)
        # Someone else's order is answered exactly like one that does not exist.
        if order is None or (order["user_id"] != viewer.user_id and not viewer.is_admin):
            raise NotFound(f"order {order_no} not found")
        return present(order)

    async def pay(self, viewer: Principal, order_no: str) -> dict:
        if await repository.mark_paid(self.db, order_no, viewer.user_id, utcnow()):
            return present(await repository.get_order(self.db, order_no))
        order = await repository.get_order(self.db, order_no)
        if order is None or (order["user_id"] != viewer.user_id and not viewer.is_admin):
            raise NotFound(f"order {order_no} not found")
        if order["user_id"] != viewer.user_id:
            raise Forbidden("only the buyer can pay an order")
        raise NotPayable(f"order {order_no} is {order['status']} and cannot be paid")
