"""user_service request and response models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.formats import Timestamp

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,32}$"


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    username: str = Field(pattern=USERNAME_PATTERN, examples=["alice"])
    password: str = Field(min_length=8, max_length=128, examples=["correct-horse-42"])


class User(BaseModel):
    id: int
    username: str
    is_admin: bool
    created_at: Timestamp


class Token(BaseModel):
    access_token: str
    token_type: str = Field(examples=["bearer"])
    expires_in: int = Field(description="seconds until the token expires")


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
