"""Order rules: who may read and pay which order."""

from __future__ import annotations

from common.auth import Principal
from common.db import Database
from common.errors import Conflict, Forbidden, NotFound
from common.formats import to_db, utcnow
from common.schemas import Order
from order_service import repository
from order_service.schemas import NewOrder, OrderPage


class NotPayable(Conflict):
    code = "not_payable"


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
    ) -> OrderPage:
        if not viewer.is_admin:
            if user_id is not None and user_id != viewer.user_id:
                raise Forbidden("you may only list your own orders")
            user_id = viewer.user_id
        rows, total = await repository.list_orders(self.db, activity_id, user_id, limit, offset)
        return OrderPage(items=[Order.model_validate(row) for row in rows], total=total)

    async def get(self, viewer: Principal, order_no: str) -> Order:
        order = await repository.get_order(self.db, order_no)
        # Someone else's order is answered exactly like one that does not exist.
        if order is None or (order["user_id"] != viewer.user_id and not viewer.is_admin):
            raise NotFound(f"order {order_no} not found")
        return Order.model_validate(order)

    async def pay(self, viewer: Principal, order_no: str) -> Order:
        if await repository.mark_paid(self.db, order_no, viewer.user_id, utcnow()):
            return Order.model_validate(await repository.get_order(self.db, order_no))
        order = await repository.get_order(self.db, order_no)
        if order is None or (order["user_id"] != viewer.user_id and not viewer.is_admin):
            raise NotFound(f"order {order_no} not found")
        if order["user_id"] != viewer.user_id:
            raise Forbidden("only the buyer can pay an order")
        raise NotPayable(f"order {order_no} is {order['status']} and cannot be paid")
