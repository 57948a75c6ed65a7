"""user_service request and response models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.formats import Timestamp
from common.openapi import omit_nulls

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,32}$"


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    username: str = Field(pattern=USERNAME_PATTERN, examples=["alice"])
    password: str = Field(min_length=8, max_length=128, examples=["correct-horse-42"])


PASSWORD_FIELD = {"min_length": 8, "max_length": 128}
# secrets.token_urlsafe(32) is 43 characters; anything much longer is not one of ours.
REFRESH_TOKEN_FIELD = {"min_length": 1, "max_length": 256}


class User(BaseModel):
    id: int
    username: str
    is_admin: bool
    disabled: bool = Field(description="a disabled account cannot log in")
    created_at: Timestamp


class Token(BaseModel):
    """OAuth 2.0's token response (RFC 6749 section 5.1)."""

    access_token: str
    token_type: str = Field(examples=["bearer"])
    expires_in: int = Field(description="seconds until the access token expires")
    refresh_token: str = Field(
        description="opaque; POST /tokens/refresh exchanges it, once, for new tokens"
    )


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    refresh_token: str = Field(**REFRESH_TOKEN_FIELD)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    old_password: str = Field(**PASSWORD_FIELD)
    new_password: str = Field(**PASSWORD_FIELD, examples=["another-Pass-9035"])


def _at_least_one(schema: dict[str, Any]) -> None:
    omit_nulls(schema)
    schema["minProperties"] = 1


class UserPatch(BaseModel):
    """Only the fields given change; at least one, and neither may be null."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_at_least_one)

    disabled: bool | None = Field(None, description="true: no login, every token revoked")
    is_admin: bool | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> UserPatch:
        if not self.model_fields_set:
            raise ValueError("give disabled, is_admin or both")
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} may not be null")
        return self

    def changes(self) -> dict[str, bool]:
        return self.model_dump(exclude_unset=True)


class Jwk(BaseModel):
    """An RSA public key (RFC 7517, RFC 7518 section 6.3) for RS256."""

    kty: Literal["RSA"]
    n: str = Field(description="the modulus, base64url")
    e: str = Field(description="the public exponent, base64url", examples=["AQAB"])
    alg: Literal["RS256"]
    use: Literal["sig"]
    kid: str | None = Field(default=None, description="the key id, when one is given")


class JwkSet(BaseModel):
    keys: list[Jwk]
