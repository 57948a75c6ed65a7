"""Response models more than one service puts on the wire: the order, as activity_service's
seckill answers it and order_service serves it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from common.formats import Money, Timestamp


class Order(BaseModel):
    order_no: str
    activity_id: int
    user_id: int
    amount: Money
    status: Literal["created", "paid", "cancelled", "expired"] = Field(
        description="order_service's answers are authoritative; a seckill answer says "
        "`created` until activity_service has applied the order's release, then "
        "`cancelled` or `expired`, and never `paid` (docs/api.md)"
    )
    created_at: Timestamp
    expires_at: Timestamp = Field(description="unpaid by then, the order expires")
