"""Access tokens: issued with the private key, verified with the public one, nothing else."""

import asyncio
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.auth import (
    ALGORITHM,
    ISSUER,
    Principal,
    TokenVerifier,
    issue_token,
    load_private_key,
    public_jwk,
)
from common.config import ConfigError
from common.errors import Unauthorized

KEY = Ed25519PrivateKey.generate()


def verify(token: str, verifier: TokenVerifier | None = None) -> Principal:
    verifier = verifier or TokenVerifier(KEY.public_key())
    return asyncio.run(verifier.verify(token))


def pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_issue_and_verify():
    assert verify(issue_token(KEY, 42, False, 60)) == Principal(42, False)
    assert verify(issue_token(KEY, 1, True, 60)) == Principal(1, True)


def test_claims():
    claims = jwt.decode(
        issue_token(KEY, 7, False, 300), KEY.public_key(), algorithms=[ALGORITHM], issuer=ISSUER
    )
    assert claims["sub"] == "7" and claims["adm"] is False
    assert claims["exp"] - claims["iat"] == 300 and abs(claims["iat"] - time.time()) < 5


def test_expired_token():
    with pytest.raises(Unauthorized):
        verify(issue_token(KEY, 42, False, -1))


def test_a_remembered_token_still_expires():
    verifier = TokenVerifier(KEY.public_key())
    token = issue_token(KEY, 42, False, 2)
    assert verify(token, verifier) == Principal(42, False)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expires - time.time()) + 0.2)
    with pytest.raises(Unauthorized):
        verify(token, verifier)


def test_forged_with_another_key():
    with pytest.raises(Unauthorized):
        verify(issue_token(Ed25519PrivateKey.generate(), 42, True, 60))


def test_tampered_claims():
    header, payload, signature = issue_token(KEY, 42, False, 60).split(".")
    _, admin_payload, _ = issue_token(KEY, 1, True, 60).split(".")
    with pytest.raises(Unauthorized):
        verify(".".join([header, admin_payload, signature]))


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b.c",
        jwt.encode({"sub": "1", "exp": 2**31, "iss": ISSUER}, None, algorithm="none"),
        jwt.encode({"sub": "1", "exp": 2**31, "iss": ISSUER}, "k" * 32, algorithm="HS256"),
        jwt.encode({"sub": "1", "exp": 2**31, "iss": "elsewhere"}, KEY, algorithm=ALGORITHM),
        jwt.encode({"sub": "1", "iss": ISSUER}, KEY, algorithm=ALGORITHM),
        jwt.encode({"exp": 2**31, "iss": ISSUER}, KEY, algorithm=ALGORITHM),
        jwt.encode({"sub": "alice", "exp": 2**31, "iss": ISSUER}, KEY, algorithm=ALGORITHM),
    ],
    ids=["empty", "word", "dots", "alg-none", "hmac", "issuer", "no-exp", "no-sub", "bad-sub"],
)
def test_invalid_tokens(token):
    with pytest.raises(Unauthorized):
        verify(token)


def test_the_published_jwk_verifies_tokens():
    jwk = public_jwk(KEY)
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and jwk["alg"] == ALGORITHM
    assert "d" not in jwk  # never the private half
    verifier = TokenVerifier()
    verifier.set_jwk(jwk)
    assert verify(issue_token(KEY, 5, False, 60), verifier) == Principal(5, False)


def test_load_private_key_round_trip():
    key = load_private_key(pem(KEY))
    assert verify(issue_token(key, 3, False, 60)) == Principal(3, False)


@pytest.mark.parametrize("text", ["", "garbage", "-----BEGIN PRIVATE KEY-----\nAAAA\n"])
def test_a_key_that_does_not_load_is_named(text):
    with pytest.raises(ConfigError, match="TOKEN_PRIVATE_KEY"):
        load_private_key(text)


def test_a_key_of_another_kind_is_named():
    with pytest.raises(ConfigError, match="Ed25519"):
        load_private_key(pem(Ed448PrivateKey.generate()))
