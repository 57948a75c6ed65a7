"""user_service's settings: the common ones, and signing, password hashing and the first admin."""

from typing import Annotated, ClassVar

from pydantic import Field, field_validator

from common.config import SECRET, Settings
from common.ratelimit import limit_setting


class UserSettings(Settings):
    service_name: ClassVar[str] = "user_service"

    token_private_key: Annotated[str, SECRET] = Field(repr=False)
    token_ttl_seconds: int = Field(3600, ge=1)
    password_hash_cost: int = Field(14, ge=4)
    admin_username: str | None = None
    admin_password: Annotated[str | None, SECRET] = Field(None, repr=False)

    # Rate limits (docs/operations.md): N/period, or 0 for off.
    limit_signups_per_ip: str = "20/hour"
    limit_logins_per_ip: str = "60/minute"
    limit_login_failures_per_username: str = "5/15minutes"

    _limits = field_validator(
        "limit_signups_per_ip",
        "limit_logins_per_ip",
        "limit_login_failures_per_username",
    )(limit_setting)
