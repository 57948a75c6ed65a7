"""order_service request and response models."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.formats import ORDER_NO_PATTERN, MoneyIn, TimestampIn
from common.schemas import Order


class OrderPage(BaseModel):
    items: list[Order]
    total: int


class OrderQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    activity_id: int | None = Field(None, ge=1, le=2**63 - 1, description="only this activity's")
    user_id: int | None = Field(
        None, ge=1, le=2**63 - 1, description="only this user's: admins, or your own id"
    )
    status: Literal["created", "paid", "cancelled", "expired"] | None = Field(
        None, description="only orders in this status"
    )
    limit: int = Field(50, ge=1, le=1000, description="page size")
    offset: int = Field(0, ge=0, le=10_000_000, description="orders to skip")


class NewOrder(BaseModel):
    """An order as activity_service's seckill committed it."""

    model_config = ConfigDict(extra="ignore")

    # The seckill's format: what GET /orders/{order_no} will look up.
    order_no: str = Field(pattern=ORDER_NO_PATTERN)
    activity_id: int = Field(ge=1, le=2**63 - 1)
    user_id: int = Field(ge=1, le=2**63 - 1)
    # Bounded like the columns: INSERT IGNORE would otherwise clip what does not fit.
    amount: MoneyIn = Field(ge=0, le=Decimal("99999999.99"), decimal_places=2)
    created_at: TimestampIn
    # Sent by activity_service from the activity's pay_within_seconds; an older sender's
    # orders get created_at + 900 s.
    expires_at: TimestampIn | None = None


class NewOrders(BaseModel):
    orders: list[NewOrder] = Field(min_length=1, max_length=5000)


class Accepted(BaseModel):
    accepted: int


class OrderStates(BaseModel):
    """How many of one activity's orders are in each state."""

    created: int = Field(examples=[120])
    paid: int = Field(examples=[300])
    cancelled: int = Field(examples=[4])
    expired: int = Field(examples=[9])
