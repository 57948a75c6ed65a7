"""Access tokens: RS256-signed JWTs minted by user_service, verified locally everywhere."""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import jwt
import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from sanic import Request, Sanic

from common.config import ConfigError
from common.errors import Forbidden, ServiceUnavailable, Unauthorized
from common.retry import AsyncRetrying, backoff

# RS256 (RSA PKCS#1 v1.5 with SHA-256) rather than EdDSA: verification is on the hot
# path (every user's first request per worker), and with `cryptography` here an
# RSA-2048 verify takes about 20 µs against about 104 µs for Ed25519. Signing is
# slower (about 250 µs) but happens only at login, after a scrypt hash anyway.
# RS256 is also the most widely supported JWT algorithm.
ALGORITHM = "RS256"
MIN_KEY_BITS = 2048
_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
ISSUER = "seckill-user-service"
# Whom the tokens are for: the seckill's own APIs, and nothing else that trusts this issuer.
AUDIENCE = "seckill-api"
# How far a token's iat may lie ahead of a verifier's clock (hosts' clocks differ a little).
CLOCK_SKEW_SECONDS = 30
SERVICE_TOKEN_HEADER = "X-Service-Token"

logger = logging.getLogger("seckill.auth")


def _b64decode(part: str) -> bytes:
    """base64url without padding, in its one canonical spelling, as PyJWT reads a token: a
    last character whose unused low bits are set spells the same bytes another way (a
    signature would have 16 spellings, each a cache entry), and is refused."""
    decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != part.encode():
        raise ValueError("not canonical base64url")
    return decoded


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    is_admin: bool


def new_private_key_pem() -> bytes:
    """A fresh signing key: RSA of MIN_KEY_BITS, unencrypted PKCS#8 PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=MIN_KEY_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_signing_key(key_file: Path) -> str | None:
    """Keep a usable key in key_file; create a missing one, replace one the signer would
    refuse (such as the Ed25519 key of earlier versions). Returns what was done, for the
    caller to say, or None when the key was kept."""
    done = f"generated the token signing key in {key_file}"
    if key_file.exists():
        try:
            load_private_key(key_file.read_text())
            return None
        except ConfigError:
            done = (
                f"{key_file} is not an RSA key of {MIN_KEY_BITS} bits or more (an older Ed25519"
                " key?): replacing it; tokens signed with the old key are no longer valid"
            )
            key_file.unlink()
    key_file.write_bytes(new_private_key_pem())
    key_file.chmod(0o600)
    return done


def load_private_key(pem: str) -> RSAPrivateKey:
    """The signing key from TOKEN_PRIVATE_KEY; one that does not load stops start-up."""
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, RSAPrivateKey) or key.key_size < MIN_KEY_BITS:
        raise ConfigError(
            "TOKEN_PRIVATE_KEY must be an unencrypted RSA private key of at least"
            f" {MIN_KEY_BITS} bits in PEM"
        )
    return key


def public_jwk(private_key: RSAPrivateKey) -> dict:
    """The public half as a JWK, for GET /.well-known/jwks.json."""
    return jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True) | {
        "alg": ALGORITHM,
        "use": "sig",
    }


def issue_token(
    private_key: RSAPrivateKey,
    user_id: int,
    is_admin: bool,
    ttl: int,
    issued_ms: int | None = None,
) -> str:
    """A signed access token. `iat` has milliseconds (RFC 7519 allows a fraction), so that a
    revocation mark orders it against tokens issued in the same second (common/revocations.py).
    issued_ms is when the claims were read, not when they are signed (user_service/service.py)."""
    if issued_ms is None:
        issued_ms = time.time_ns() // 1_000_000
    claims = {
        "sub": str(user_id),
        "adm": is_admin,
        "iat": issued_ms / 1000,
        "exp": issued_ms // 1000 + ttl,
        "iss": ISSUER,
        "aud": AUDIENCE,
        # A unique id, for a revocation list to name one token by.
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode(claims, private_key, algorithm=ALGORITHM)


def _audience_holds(aud: object) -> bool:
    """RFC 7519: one string, or a list of them that names us (as PyJWT reads it)."""
    return aud == AUDIENCE or (isinstance(aud, list) and AUDIENCE in aud)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class TokenRevoked(Unauthorized):
    code = "token_revoked"


class TokenVerifier:
    """Verifies bearer tokens; a verified token is remembered until it expires (bounded LRU).

    max_ttl caps a token's lifetime (exp - iat): a token minted to last for years, by a
    mistake or a stolen key, is refused (TOKEN_MAX_TTL_SECONDS). A token issued before its
    user's revocation mark (set_revocations, common/revocations.py) is refused, cached or not.
    """

    def __init__(
        self,
        public_key: RSAPublicKey | None = None,
        cache_size: int = 100_000,
        max_ttl: int = 3600,
    ):
        self._key = public_key
        self._max_ttl = max_ttl
        self._key_ready = asyncio.Event()
        if public_key is not None:
            self._key_ready.set()
        # token -> (user id, is admin, expires, issued): a plain tuple of numbers, which the
        # cyclic garbage collector stops tracking at its first look, so the sale's hundreds
        # of thousands of cached tokens add nothing to its full collections (a Principal
        # in it, a class instance, would keep every entry tracked).
        self._cache: OrderedDict[str, tuple[int, bool, float, float]] = OrderedDict()
        self._cache_size = cache_size
        # user id -> iat before which that user's tokens are refused (common/revocations.py)
        self._not_before: dict[int, float] = {}
        self._own: dict[int, float] = {}  # marks made by this worker, kept until in the list

    def set_revocations(self, marks: dict[int, float]) -> None:
        """The whole list, as last read; replaces the previous one, but keeps this worker's
        own marks (revoke) that a read started before them did not have yet."""
        if self._own:
            oldest = time.time() - self._max_ttl
            self._own = {user: mark for user, mark in self._own.items() if mark > oldest}
            missing = {u: m for u, m in self._own.items() if marks.get(u, 0.0) < m}
            if missing:
                marks = marks | missing
        self._not_before = marks

    def revoke(self, user_id: int, not_before: float) -> None:
        """One mark, at once, in this worker (user_service's own, before the list has it)."""
        mark = max(not_before, self._not_before.get(user_id, 0.0))
        self._own[user_id] = mark
        self._not_before = self._not_before | {user_id: mark}

    def _check(self, token: str, now: float) -> tuple[Principal, float, float]:
        """Verify signature and claims; returns the principal, its expiry and its iat.

        The hot path of every first request of a user: the signature check is
        cryptography's RSA directly, without a general JWT library around it. The
        header must name RS256: a token claiming another algorithm (none, HS256 with
        the public key as its secret, EdDSA) is refused before the signature is checked.

        Not jwt.decode: PyJWT 2.15 checks each base64 character of the token in Python
        (some 500 per token), which made a verification about 2-2.5 times as slow as
        this one (measured side by side with a 2048-bit key), and in a sale nearly every
        buyer's request is a first one in its worker. tests/unit/test_tokens.py checks
        that every token PyJWT refuses is refused here too.
        """
        try:
            if not _COMPACT_JWS.match(token):
                raise ValueError("not a compact JWS")
            signed, _, signature = token.rpartition(".")
            header_part, _, claims_part = signed.partition(".")
            if orjson.loads(_b64decode(header_part)).get("alg") != ALGORITHM:
                raise ValueError("unexpected algorithm")
            self._key.verify(
                _b64decode(signature), signed.encode(), padding.PKCS1v15(), hashes.SHA256()
            )
            claims = orjson.loads(_b64decode(claims_part))
            expires, subject, issued = claims["exp"], claims["sub"], claims["iat"]
            if (
                claims.get("iss") != ISSUER
                or not _audience_holds(claims.get("aud"))
                or not _number(expires)
                or now >= expires
                or not _number(issued)
                or issued > now + CLOCK_SKEW_SECONDS
                or expires - issued > self._max_ttl
                or not isinstance(claims.get("jti"), str)
                or not claims["jti"]
                or not isinstance(subject, str)
                or not subject.isdigit()
                or not isinstance(claims.get("adm", False), bool)
                or claims.get("nbf", 0) > now
            ):
                raise ValueError("claims do not hold")
            principal = Principal(int(subject), claims.get("adm", False))
            return principal, float(expires), float(issued)
        except (InvalidSignature, ValueError, TypeError, KeyError, AttributeError):
            raise Unauthorized("the access token is invalid or expired") from None

    def set_jwk(self, jwk: dict) -> None:
        key = jwt.PyJWK(jwk, algorithm=ALGORITHM).key
        if not isinstance(key, RSAPublicKey) or key.key_size < MIN_KEY_BITS:
            raise ValueError(
                f"the token key must be an RSA public key of at least {MIN_KEY_BITS} bits"
            )
        self._key = key
        self._key_ready.set()

    async def verify(self, token: str) -> Principal:
        cached = self._cache.get(token)
        now = time.time()
        if cached is not None:
            user_id, is_admin, expires, issued = cached
            if now < expires:
                if issued < self._not_before.get(user_id, 0.0):
                    raise TokenRevoked("the access token was revoked; log in again")
                self._cache.move_to_end(token)
                return Principal(user_id, is_admin)
            del self._cache[token]
        if self._key is None:
            try:
                await asyncio.wait_for(self._key_ready.wait(), timeout=5)
            except TimeoutError:
                raise ServiceUnavailable("the token key is not available yet") from None
        principal, expires, issued = self._check(token, now)
        if issued < self._not_before.get(principal.user_id, 0.0):
            raise TokenRevoked("the access token was revoked; log in again")
        self._cache[token] = (principal.user_id, principal.is_admin, expires, issued)
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
    app.ctx.tokens = TokenVerifier(max_ttl=app.ctx.settings.token_max_ttl_seconds)

    async def fetch_jwks(app: Sanic) -> None:
        async for attempt in AsyncRetrying(
            retry_on=Exception,  # for ever: user_service may start after us
            wait=backoff(0.2, 5.0),
            log=lambda exc, _: logger.warning("cannot fetch the token key yet: %s", exc),
        ):
            with attempt:
                body = await app.ctx.peers["user_service"].request("GET", "/.well-known/jwks.json")
                app.ctx.tokens.set_jwk(body["keys"][0])
        logger.info("token verification key loaded from user_service")

    @app.after_server_start
    async def start_fetch(app: Sanic) -> None:
        app.add_task(fetch_jwks(app), name="fetch_jwks")
