"""Order rules: who may read, pay and cancel which order."""

from __future__ import annotations

from datetime import timedelta

from common.auth import Principal
from common.db import Database
from common.errors import Conflict, Forbidden, NotFound
from common.formats import to_db, utcnow
from common.schemas import Order
from order_service import repository
from order_service.schemas import NewOrder, OrderPage

# For orders from an activity_service that does not send expires_at yet (docs/api.md).
DEFAULT_PAY_WITHIN = timedelta(seconds=900)


class NotPayable(Conflict):
    code = "not_payable"


class NotCancellable(Conflict):
    code = "not_cancellable"


class OrderService:
    def __init__(self, db: Database, deliver_releases=None):
        self.db = db
        # deliver_releases([{"order_no", "status"}]): hand released units back right away.
        self.deliver_releases = deliver_releases or (lambda releases: None)

    async def states(self, activity_id: int) -> dict[str, int]:
        """status -> how many of the activity's orders have it."""
        return await repository.states_of_activity(self.db, activity_id)

    async def accept(self, orders: list[NewOrder]) -> int:
        rows = [
            order.model_dump()
            | {
                "created_at": to_db(order.created_at),
                "expires_at": to_db(order.expires_at or order.created_at + DEFAULT_PAY_WITHIN),
            }
            for order in orders
        ]
        await repository.insert_orders(self.db, rows)
        return len(rows)

    async def list(
        self,
        viewer: Principal,
        activity_id: int | None,
        user_id: int | None,
        status: str | None,
        limit: int,
        offset: int,
    ) -> OrderPage:
        if not viewer.is_admin:
            if user_id is not None and user_id != viewer.user_id:
                raise Forbidden("you may only list your own orders")
            user_id = viewer.user_id
        rows, total = await repository.list_orders(
            self.db, activity_id, user_id, status, limit, offset
        )
        return OrderPage(items=[Order.model_validate(row) for row in rows], total=total)

    async def get(self, viewer: Principal, order_no: str) -> Order:
        return Order.model_validate(await self._visible(viewer, order_no))

    async def _visible(self, viewer: Principal, order_no: str) -> dict:
        order = await repository.get_order(self.db, order_no)
        # Someone else's order is answered exactly like one that does not exist.
        if order is None or (order["user_id"] != viewer.user_id and not viewer.is_admin):
            raise NotFound(f"order {order_no} not found")
        return order

    async def pay(self, viewer: Principal, order_no: str) -> Order:
        if await repository.mark_paid(self.db, order_no, viewer.user_id):
            return Order.model_validate(await repository.get_order(self.db, order_no))
        order = await self._visible(viewer, order_no)
        if order["user_id"] != viewer.user_id:
            raise Forbidden("only the buyer can pay an order")
        if order["status"] == "paid":  # a retried payment: the same answer
            return Order.model_validate(order)
        if order["status"] == "created":
            raise NotPayable(f"order {order_no} is past its deadline and cannot be paid")
        raise NotPayable(f"order {order_no} is {order['status']} and cannot be paid")

    async def cancel(self, viewer: Principal, order_no: str) -> Order:
        order = await self._visible(viewer, order_no)  # the buyer or an admin
        if order["status"] == "created" and await repository.cancel(self.db, order_no, utcnow()):
            self.deliver_releases([{"order_no": order_no, "status": "cancelled"}])
            return Order.model_validate(await repository.get_order(self.db, order_no))
        order = await repository.get_order(self.db, order_no)
        if order["status"] == "cancelled":  # a repeat: the same answer
            return Order.model_validate(order)
        if order["status"] == "created":
            raise NotCancellable(f"order {order_no} is past its deadline: it expires unpaid")
        raise NotCancellable(f"order {order_no} is {order['status']} and cannot be cancelled")
