"""order_service request and response models."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.validation import Id, Timestamp


class Order(BaseModel):
    order_no: str
    activity_id: int
    user_id: int
    amount: str = Field(examples=["19.90"])
    status: Literal["created", "paid"]
    created_at: str = Field(examples=["2026-11-26T15:00:01Z"])


class OrderPage(BaseModel):
    items: list[Order]
    total: int


class OrderQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    activity_id: Id | None = None
    user_id: Id | None = None
    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10_000_000)


class NewOrder(BaseModel):
    """An order as activity_service's seckill committed it."""

    model_config = ConfigDict(extra="ignore")

    order_no: str = Field(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")
    activity_id: Id
    user_id: Id
    # Bounded like the column: INSERT IGNORE would otherwise clip what does not fit.
    amount: Decimal = Field(ge=0, le=Decimal("99999999.99"), decimal_places=2)
    created_at: Timestamp


class NewOrders(BaseModel):
    orders: list[NewOrder] = Field(min_length=1, max_length=5000)


class Accepted(BaseModel):
    accepted: int
