"""Access tokens: Ed25519-signed JWTs minted by user_service, verified locally everywhere."""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt
import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from sanic import Request, Sanic

from common.config import ConfigError
from common.errors import Forbidden, ServiceUnavailable, Unauthorized

ALGORITHM = "EdDSA"
_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
ISSUER = "seckill-user-service"
SERVICE_TOKEN_HEADER = "X-Service-Token"

logger = logging.getLogger("seckill.auth")


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    is_admin: bool


def load_private_key(pem: str) -> Ed25519PrivateKey:
    """The signing key from TOKEN_PRIVATE_KEY; one that does not load stops start-up."""
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("TOKEN_PRIVATE_KEY must be an unencrypted Ed25519 private key in PEM")
    return key


def public_jwk(private_key: Ed25519PrivateKey) -> dict:
    """The public half as a JWK, for GET /.well-known/jwks.json."""
    return jwt.algorithms.OKPAlgorithm.to_jwk(private_key.public_key(), as_dict=True) | {
        "alg": ALGORITHM,
        "use": "sig",
    }


def issue_token(private_key: Ed25519PrivateKey, user_id: int, is_admin: bool, ttl: int) -> str:
    now = int(time.time())
    claims = {"sub": str(user_id), "adm": is_admin, "iat": now, "exp": now + ttl, "iss": ISSUER}
    return jwt.encode(claims, private_key, algorithm=ALGORITHM)


class TokenVerifier:
    """Verifies bearer tokens; a verified token is remembered until it expires (bounded LRU)."""

    def __init__(self, public_key: Ed25519PublicKey | None = None, cache_size: int = 100_000):
        self._key = public_key
        self._key_ready = asyncio.Event()
        if public_key is not None:
            self._key_ready.set()
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size

    def _check(self, token: str, now: float) -> tuple[Principal, float]:
        """Verify signature and claims; returns the principal and when the token expires.

        The hot path of every first request of a user: the signature check is
        cryptography's Ed25519 directly, without a general JWT library around it.
        """
        try:
            if not _COMPACT_JWS.match(token):
                raise ValueError("not a compact JWS")
            signed, _, signature = token.rpartition(".")
            header_part, _, claims_part = signed.partition(".")
            if orjson.loads(_b64decode(header_part)).get("alg") != ALGORITHM:
                raise ValueError("unexpected algorithm")
            self._key.verify(_b64decode(signature), signed.encode())
            claims = orjson.loads(_b64decode(claims_part))
            expires, subject = claims["exp"], claims["sub"]
            if (
                claims.get("iss") != ISSUER
                or not isinstance(expires, int | float)
                or isinstance(expires, bool)
                or now >= expires
                or not isinstance(subject, str)
                or not subject.isdigit()
                or not isinstance(claims.get("adm", False), bool)
                or claims.get("nbf", 0) > now
            ):
                raise ValueError("claims do not hold")
            return Principal(int(subject), claims.get("adm", False)), float(expires)
        except (InvalidSignature, ValueError, TypeError, KeyError, AttributeError):
            raise Unauthorized("the access token is invalid or expired") from None

    def set_jwk(self, jwk: dict) -> None:
        self._key = jwt.PyJWK(jwk, algorithm=ALGORITHM).key
        self._key_ready.set()

    async def verify(self, token: str) -> Principal:
        cached = self._cache.get(token)
        now = time.time()
        if cached is not None:
            principal, expires = cached
            if now < expires:
                self._cache.move_to_end(token)
                return principal
            del self._cache[token]
        if self._key is None:
            try:
                await asyncio.wait_for(self._key_ready.wait(), timeout=5)
            except TimeoutError:
                raise ServiceUnavailable("the token key is not available yet") from None
        principal, expires = self._check(token, now)
        self._cache[token] = (principal, expires)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("an 'Authorization: Bearer <token>' header is required")
    return token.strip()


async def current_user(request: Request) -> Principal:
    return await request.app.ctx.tokens.verify(bearer_token(request))


async def require_admin(request: Request) -> Principal:
    principal = await current_user(request)
    if not principal.is_admin:
        raise Forbidden("this action needs an admin account")
    return principal


def require_service(request: Request) -> None:
    """Internal endpoints accept only the shared service credential, never a user token."""
    sent = request.headers.get(SERVICE_TOKEN_HEADER, "")
    expected = request.app.ctx.settings.service_token or ""
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden("this endpoint is for services only")


def setup_remote_keys(app: Sanic) -> None:
    """Services other than user_service fetch its public key once, retrying until it answers."""
    app.ctx.tokens = TokenVerifier()

    async def fetch_jwks(app: Sanic) -> None:
        delay = 0.2
        while True:
            try:
                body = await app.ctx.peers["user_service"].request("GET", "/.well-known/jwks.json")
                app.ctx.tokens.set_jwk(body["keys"][0])
                logger.info("token verification key loaded from user_service")
                return
            except Exception as exc:  # keep trying: user_service may start after us
                logger.warning("cannot fetch the token key yet: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)

    @app.after_server_start
    async def start_fetch(app: Sanic) -> None:
        app.add_task(fetch_jwks(app), name="fetch_jwks")
