"""activity_service's settings: the common ones, the service credential, and seckill batching."""

from typing import Annotated, ClassVar

from pydantic import Field, field_validator

from common.config import SECRET, Settings
from common.limits.ratelimit import limit_setting


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

    _limits = field_validator(
        "limit_seckill_per_user",
        "limit_seckill_per_ip",
        "limit_challenges_per_user",
        "limit_challenges_per_ip",
    )(limit_setting)
    # How long a challenge from GET /activities/{id}/challenge may be solved and used.
    challenge_ttl_seconds: int = Field(300, ge=1)
    # user_service's and order_service's addresses as the shop's browsers reach them
    # (docs/shop.md); unset: the page's own host name with USER/ORDER_SERVICE_PORT.
    shop_user_url: str | None = None
    shop_order_url: str | None = None
    # A read-only key for the sale dashboard, instead of an admin token (docs/dashboard.md).
    dashboard_key: Annotated[str | None, SECRET] = Field(None, repr=False)
