"""user_service's settings: the common ones, and signing, password hashing and the first admin."""

from typing import Annotated, ClassVar

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from common.config import SECRET, Settings
from common.cors import origins_setting
from common.limits.ratelimit import limit_setting


class UserSettings(Settings):
    service_name: ClassVar[str] = "user_service"

    token_private_key: Annotated[str, SECRET] = Field(repr=False)
    token_ttl_seconds: int = Field(900, ge=1)
    # How long a refresh token may wait to be used; each refresh starts the next one's time.
    refresh_token_ttl_seconds: int = Field(14 * 24 * 3600, ge=60)
    password_hash_cost: int = Field(14, ge=4)
    # Threads per worker for password hashing, and how many more requests may wait for one.
    password_hash_threads: int = Field(1, ge=1)
    password_hash_queue: int = Field(8, ge=0)
    # The policy for new passwords (user_service/policy.py).
    password_min_length: int = Field(10, ge=8, le=128)
    password_min_score: int = Field(3, ge=0, le=4)
    admin_username: str | None = None
    admin_password: Annotated[str | None, SECRET] = Field(None, repr=False)

    @field_validator("token_ttl_seconds")
    @classmethod
    def _within_the_cap(cls, ttl: int, info: ValidationInfo) -> int:
        # Every verifier, this service's own included, would refuse longer tokens.
        cap = info.data.get("token_max_ttl_seconds")
        if cap is not None and ttl > cap:
            raise ValueError(f"must not exceed TOKEN_MAX_TTL_SECONDS ({cap})")
        return ttl

    # Rate limits (docs/operations.md): N/period, or 0 for off.
    limit_signups_per_ip: str = "20/hour"
    limit_logins_per_ip: str = "60/minute"
    limit_login_failures_per_username: str = "5/15minutes"
    limit_refreshes_per_ip: str = "60/minute"
    limit_revocations_per_ip: str = "60/minute"

    _limits = field_validator(
        "limit_signups_per_ip",
        "limit_logins_per_ip",
        "limit_login_failures_per_username",
        "limit_refreshes_per_ip",
        "limit_revocations_per_ip",
    )(limit_setting)

    # The shop's page may call this service from these origins (CORS, docs/shop.md); unset:
    # activity_service's address on this machine (127.0.0.1 and localhost, its port).
    shop_origins: Annotated[tuple[str, ...], NoDecode] = ()
    _shop_origins = field_validator("shop_origins", mode="before")(origins_setting)
