"""activity_service request and response models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.formats import Money, MoneyIn, Timestamp, TimestampIn
from common.openapi import omit_nulls

MAX_STOCK = 10_000_000
PAY_WITHIN_SECONDS = {"ge": 10, "le": 86_400, "strict": True}
MIN_DIFFICULTY, MAX_DIFFICULTY = 1_000, 10_000_000
CHALLENGE = (
    "whether a seckill must carry a solved challenge (GET /activities/{id}/challenge); "
    "may change only before the start"
)
DIFFICULTY = (
    "the challenge's maxNumber: a solver hashes about half of it on average "
    "(50,000: about 0.05 s in a browser); may change only before the start"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActivityCreate(_Strict):
    name: str = Field(min_length=1, max_length=100, examples=["Double 11 flash sale"])
    product_name: str = Field(min_length=1, max_length=100, examples=["Mechanical keyboard"])
    price: MoneyIn = Field(
        gt=0,
        le=Decimal("99999999.99"),
        decimal_places=2,
        description="a decimal string with at most two places",
    )
    stock: int = Field(ge=0, le=MAX_STOCK, strict=True, examples=[100])
    starts_at: TimestampIn = Field(examples=["2026-11-26T15:00:00Z"])
    ends_at: TimestampIn = Field(examples=["2026-11-26T16:00:00Z"])
    pay_within_seconds: int = Field(
        900, **PAY_WITHIN_SECONDS, description="how long a buyer has to pay an order"
    )
    challenge: bool = Field(False, strict=True, description=CHALLENGE)
    challenge_difficulty: int = Field(
        50_000, ge=MIN_DIFFICULTY, le=MAX_DIFFICULTY, strict=True, description=DIFFICULTY
    )

    @model_validator(mode="after")
    def window_is_forward(self) -> ActivityCreate:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


def example_window() -> dict[str, str]:
    """An ActivityCreate window open now and for an hour: the document's example, made live."""
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "starts_at": (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
        "ends_at": (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
    }


class ActivityPatch(_Strict):
    """Only the fields given change; none of them may be null."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=omit_nulls)

    name: str | None = Field(None, min_length=1, max_length=100)
    product_name: str | None = Field(None, min_length=1, max_length=100)
    price: MoneyIn | None = Field(None, gt=0, le=Decimal("99999999.99"), decimal_places=2)
    stock: int | None = Field(None, ge=0, le=MAX_STOCK, strict=True)
    starts_at: TimestampIn | None = None
    ends_at: TimestampIn | None = None
    pay_within_seconds: int | None = Field(
        None, **PAY_WITHIN_SECONDS, description="for orders placed from now on"
    )
    challenge: bool | None = Field(None, strict=True, description=CHALLENGE)
    challenge_difficulty: int | None = Field(
        None, ge=MIN_DIFFICULTY, le=MAX_DIFFICULTY, strict=True, description=DIFFICULTY
    )


class Activity(BaseModel):
    id: int
    name: str
    product_name: str
    price: Money
    stock: int = Field(description="the initial inventory")
    remaining: int = Field(description="what is left to sell")
    starts_at: Timestamp
    ends_at: Timestamp
    pay_within_seconds: int = Field(description="how long a buyer has to pay an order")
    status: Literal["upcoming", "active", "sold_out", "ended"]
    challenge: bool = Field(description=CHALLENGE)
    challenge_difficulty: int = Field(description=DIFFICULTY)


class ChallengeParameters(BaseModel):
    """ALTCHA v2's parameters: find the counter whose derived key starts with keyPrefix."""

    algorithm: str = Field(examples=["SHA-256"])
    cost: int = Field(description="iterations of the key derivation per counter tried")
    keyLength: int = Field(description="bytes of the derived key")  # noqa: N815
    keyPrefix: str = Field(description="hex: what the derived key of the answer starts with")  # noqa: N815
    nonce: str = Field(description="hex; the password is the nonce and the counter")
    salt: str = Field(description="hex, the key derivation's salt")
    keySignature: str = Field(description="HMAC of the answer's derived key, by the service")  # noqa: N815
    expiresAt: int = Field(description="Unix seconds; not accepted afterwards")  # noqa: N815
    data: dict[str, str] = Field(description="a (activity) and u (user) it is bound to")


class Challenge(BaseModel):
    """An ALTCHA challenge (v2, the current protocol): for the ALTCHA widget 3.x in its
    default configuration, or any ALTCHA v2 solver."""

    parameters: ChallengeParameters
    signature: str = Field(description="HMAC of the parameters, by the service")


class ChallengeV1(BaseModel):
    """An ALTCHA challenge in the v1 format, for clients that solve only that."""

    algorithm: str = Field(examples=["SHA-256"])
    challenge: str = Field(description="the SHA-256 of salt + the secret number, in hex")
    maxNumber: int = Field(description="the secret number is at most this")  # noqa: N815
    salt: str = Field(description="carries expires, a (activity) and u (user)")
    signature: str = Field(description="HMAC of challenge, by the service")


class ActivityPage(BaseModel):
    items: list[Activity]
    total: int


class PageQuery(_Strict):
    limit: int = Field(20, ge=1, le=100, description="page size")
    offset: int = Field(0, ge=0, le=10_000_000, description="activities to skip")


class Release(_Strict):
    """A unit order_service gives back: the order was cancelled or expired unpaid."""

    model_config = ConfigDict(extra="ignore")

    order_no: str = Field(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")
    status: Literal["cancelled", "expired"]


class Releases(_Strict):
    releases: list[Release] = Field(min_length=1, max_length=500)


class ReleasesApplied(BaseModel):
    accepted: int = Field(description="releases given; each is applied once, whatever repeats")
