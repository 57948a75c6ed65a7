"""activity_service request and response models."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from common.validation import Timestamp

MAX_STOCK = 10_000_000
MONEY = re.compile(r"[0-9]{1,8}(\.[0-9]{1,2})?")


def _money_string(value: object) -> object:
    if not isinstance(value, str) or not MONEY.fullmatch(value):
        raise ValueError('must be a decimal string with at most two places, such as "19.90"')
    return value


# Money is a string on the wire; a JSON number or "1e3" is refused rather than guessed at.
Price = Annotated[
    Decimal,
    BeforeValidator(_money_string),
    Field(gt=0, le=Decimal("99999999.99"), decimal_places=2),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9]{1,8}(\.[0-9]{1,2})?$"}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActivityCreate(_Strict):
    name: str = Field(min_length=1, max_length=100, examples=["Double 11 flash sale"])
    product_name: str = Field(min_length=1, max_length=100, examples=["Mechanical keyboard"])
    price: Price = Field(examples=["19.90"], description="a decimal string, at most two places")
    stock: int = Field(ge=0, le=MAX_STOCK, strict=True, examples=[100])
    starts_at: Timestamp = Field(examples=["2026-11-26T15:00:00Z"])
    ends_at: Timestamp = Field(examples=["2026-11-26T16:00:00Z"])

    @model_validator(mode="after")
    def window_is_forward(self) -> ActivityCreate:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class ActivityPatch(_Strict):
    name: str | None = Field(None, min_length=1, max_length=100)
    product_name: str | None = Field(None, min_length=1, max_length=100)
    price: Price | None = None
    stock: int | None = Field(None, ge=0, le=MAX_STOCK, strict=True)
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None


class Activity(BaseModel):
    id: int
    name: str
    product_name: str
    price: str = Field(examples=["19.90"])
    stock: int = Field(description="the initial inventory")
    remaining: int = Field(description="what is left to sell")
    starts_at: str = Field(examples=["2026-11-26T15:00:00Z"])
    ends_at: str = Field(examples=["2026-11-26T16:00:00Z"])
    status: Literal["upcoming", "active", "sold_out", "ended"]


class ActivityPage(BaseModel):
    items: list[Activity]
    total: int


class PageQuery(_Strict):
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=10_000_000)


class Order(BaseModel):
    order_no: str
    activity_id: int
    user_id: int
    amount: str = Field(examples=["19.90"])
    status: Literal["created", "paid"]
    created_at: str = Field(examples=["2026-11-26T15:00:01Z"])
