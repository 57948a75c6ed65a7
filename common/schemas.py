"""Response models more than one service puts on the wire: the order, as activity_service's
seckill answers it and order_service serves it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from common.formats import Money, Timestamp


class Order(BaseModel):
    order_no: str
    activity_id: int
    user_id: int
    amount: Money
    status: Literal["created", "paid"]
    created_at: Timestamp
