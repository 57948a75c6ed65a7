"""user_service's settings: the common ones, and signing, password hashing and the first admin."""

from typing import Annotated, ClassVar

from pydantic import Field

from common.config import SECRET, Settings


class UserSettings(Settings):
    service_name: ClassVar[str] = "user_service"

    token_private_key: Annotated[str, SECRET] = Field(repr=False)
    token_ttl_seconds: int = Field(3600, ge=1)
    password_hash_cost: int = Field(14, ge=4)
    admin_username: str | None = None
    admin_password: Annotated[str | None, SECRET] = Field(None, repr=False)
