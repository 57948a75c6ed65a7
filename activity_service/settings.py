"""activity_service's settings: the common ones, the service credential, and seckill batching."""

import math
import string
from typing import Annotated, ClassVar

from pydantic import Field, field_validator

from common.config import SECRET, Settings
from common.limits.ratelimit import limit_setting

# The alphabets a key is counted in, smallest first: its bits are its length times log2 of
# the size of the first that holds every character (docs/operations.md, DASHBOARD_KEY).
ALPHABETS = (
    (10, set(string.digits)),
    (16, set(string.digits + "abcdef")),
    (16, set(string.digits + "ABCDEF")),
    (36, set(string.digits + string.ascii_lowercase)),
    (36, set(string.digits + string.ascii_uppercase)),
    (62, set(string.digits + string.ascii_letters)),
    (64, set(string.digits + string.ascii_letters + "-_")),  # base64url
    (64, set(string.digits + string.ascii_letters + "+/=")),  # base64
)
PRINTABLE = 95  # any other key: printable ASCII at best
MIN_KEY_BITS = 128
MIN_DISTINCT_CHARACTERS = 8


def key_bits(key: str) -> float:
    """What a key can carry at most: length x log2(its alphabet's size)."""
    size = next((size for size, alphabet in ALPHABETS if set(key) <= alphabet), PRINTABLE)
    return len(key) * math.log2(size)


def strong_key(key: str | None) -> str | None:
    """A settings validator: empty (no key), or one of at least MIN_KEY_BITS."""
    if not key:
        return None
    if key_bits(key) < MIN_KEY_BITS or len(set(key)) < MIN_DISTINCT_CHARACTERS:
        raise ValueError(
            f"must carry at least {MIN_KEY_BITS} bits: 32 hex digits or 22 characters of"
            " base64url, random (python3 -c 'import secrets; print(secrets.token_urlsafe(16))')"
        )
    return key


class ActivitySettings(Settings):
    service_name: ClassVar[str] = "activity_service"

    service_token: Annotated[str, SECRET] = Field(repr=False)
    seckill_batch_max: int = Field(200, ge=1)
    seckill_batch_wait_ms: float = 0.0

    # Rate limits (docs/operations.md): N/period, or 0 for off.
    limit_seckill_per_user: str = "20/10seconds"
    limit_seckill_per_ip: str = "60/minute"
    limit_challenges_per_user: str = "20/10seconds"
    limit_challenges_per_ip: str = "60/minute"
    limit_dashboard_key_failures_per_ip: str = "10/minute"

    _limits = field_validator(
        "limit_seckill_per_user",
        "limit_seckill_per_ip",
        "limit_challenges_per_user",
        "limit_challenges_per_ip",
        "limit_dashboard_key_failures_per_ip",
    )(limit_setting)
    # How long a challenge from GET /activities/{id}/challenge may be solved and used.
    challenge_ttl_seconds: int = Field(300, ge=1)
    # user_service's and order_service's addresses as the shop's browsers reach them
    # (docs/shop.md); unset: the page's own host name with USER/ORDER_SERVICE_PORT.
    shop_user_url: str | None = None
    shop_order_url: str | None = None
    # A read-only key for the sale dashboard, instead of an admin token (docs/dashboard.md).
    dashboard_key: Annotated[str | None, SECRET] = Field(None, repr=False)

    _strong_key = field_validator("dashboard_key")(strong_key)
