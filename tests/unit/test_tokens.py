"""Access tokens: issued with the private key, verified with the public one, nothing else."""

import asyncio
import base64
import hashlib
import hmac
import time

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
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

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CLAIMS = {"sub": "1", "adm": True, "exp": 2**31, "iss": ISSUER}


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
        verify(issue_token(rsa.generate_private_key(65537, 2048), 42, True, 60))


def test_tampered_claims():
    header, payload, signature = issue_token(KEY, 42, False, 60).split(".")
    _, admin_payload, _ = issue_token(KEY, 1, True, 60).split(".")
    with pytest.raises(Unauthorized):
        verify(".".join([header, admin_payload, signature]))


INVALID = {
    "empty": "",
    "word": "abc",
    "dots": "a.b.c",
    "alg-none": jwt.encode({"sub": "1", "exp": 2**31, "iss": ISSUER}, None, algorithm="none"),
    "hmac": jwt.encode({"sub": "1", "exp": 2**31, "iss": ISSUER}, "k" * 32, algorithm="HS256"),
    "eddsa": jwt.encode(CLAIMS, Ed25519PrivateKey.generate(), algorithm="EdDSA"),
    "rs512": jwt.encode(CLAIMS, KEY, algorithm="RS512"),
    "ps256": jwt.encode(CLAIMS, KEY, algorithm="PS256"),
    "issuer": jwt.encode({"sub": "1", "exp": 2**31, "iss": "elsewhere"}, KEY, algorithm=ALGORITHM),
    "no-exp": jwt.encode({"sub": "1", "iss": ISSUER}, KEY, algorithm=ALGORITHM),
    "no-sub": jwt.encode({"exp": 2**31, "iss": ISSUER}, KEY, algorithm=ALGORITHM),
    "bad-sub": jwt.encode({"sub": "alice", "exp": 2**31, "iss": ISSUER}, KEY, algorithm=ALGORITHM),
}


@pytest.mark.parametrize("token", INVALID.values(), ids=INVALID.keys())
def test_invalid_tokens(token):
    with pytest.raises(Unauthorized):
        verify(token)


def test_the_published_jwk_verifies_tokens():
    jwk = public_jwk(KEY)
    assert jwk["kty"] == "RSA" and jwk["alg"] == ALGORITHM == "RS256" and jwk["use"] == "sig"
    assert jwk["e"] == "AQAB" and len(b64decode(jwk["n"])) == 256
    assert not {"d", "p", "q", "dp", "dq", "qi"} & jwk.keys()  # never the private half
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


@pytest.mark.parametrize(
    "key",
    [Ed25519PrivateKey.generate(), rsa.generate_private_key(65537, 1024)],
    ids=["ed25519", "rsa-1024"],
)
def test_a_key_of_another_kind_or_too_short_is_named(key):
    with pytest.raises(ConfigError, match="RSA private key of at least 2048 bits"):
        load_private_key(pem(key))


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_pem() -> bytes:
    return KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def hmac_token(secret: bytes) -> str:
    """HS256 with a secret the attacker knows; PyJWT refuses to sign with a PEM, so by hand."""
    header = b64encode(b'{"alg":"HS256","typ":"JWT"}')
    payload = b64encode(orjson.dumps(CLAIMS))
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64encode(signature)}"


def test_algorithm_confusion_is_refused():
    """The public key, which anyone can fetch, used as an HMAC secret: the classic attack."""
    with pytest.raises(Unauthorized):
        verify(hmac_token(public_pem()))
    with pytest.raises(Unauthorized):
        verify(hmac_token(b64decode(public_jwk(KEY)["n"])))


def test_a_genuine_signature_under_a_header_naming_another_algorithm_is_refused():
    """The RS256 signature is valid for its bytes, but the header must say RS256."""
    for alg in ("EdDSA", "none", "HS256", "RS512"):
        header = b64encode(orjson.dumps({"alg": alg, "typ": "JWT"}))
        payload = b64encode(orjson.dumps(CLAIMS))
        signing_input = f"{header}.{payload}".encode()
        signature = KEY.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        with pytest.raises(Unauthorized):
            verify(f"{header}.{payload}.{b64encode(signature)}")


@pytest.mark.parametrize(
    "jwk",
    [
        jwt.algorithms.OKPAlgorithm.to_jwk(Ed25519PrivateKey.generate().public_key(), as_dict=True)
        | {"alg": "EdDSA", "use": "sig"},
        public_jwk(rsa.generate_private_key(65537, 1024)),
        jwt.algorithms.RSAAlgorithm.to_jwk(KEY, as_dict=True) | {"alg": "RS256", "use": "sig"},
    ],
    ids=["ed25519", "rsa-1024", "private-half"],
)
def test_set_jwk_takes_only_an_rsa_public_key(jwk):
    verifier = TokenVerifier()
    with pytest.raises((jwt.InvalidKeyError, ValueError)):
        verifier.set_jwk(jwk)
    assert verifier._key is None


# What PyJWT refuses, the hand-written check (faster: see TokenVerifier._check) refuses too.
def refused_by_pyjwt() -> dict[str, str]:
    """Made when a test runs: tokens stamped relative to now must not age while others run."""
    now = int(time.time())
    return {
        **{name: token for name, token in INVALID.items() if name != "bad-sub"},
        "expired": jwt.encode(CLAIMS | {"exp": now - 1}, KEY, algorithm=ALGORITHM),
        "not-yet": jwt.encode(CLAIMS | {"nbf": now + 60}, KEY, algorithm=ALGORITHM),
        "no-iss": jwt.encode({"sub": "1", "exp": 2**31}, KEY, algorithm=ALGORITHM),
        "sub-number": jwt.encode(CLAIMS | {"sub": 1}, KEY, algorithm=ALGORITHM),
        "exp-text": jwt.encode(CLAIMS | {"exp": "soon"}, KEY, algorithm=ALGORITHM),
        "forged": jwt.encode(CLAIMS, FORGER, algorithm=ALGORITHM),
    }


FORGER = rsa.generate_private_key(65537, 2048)
REFUSED = list(refused_by_pyjwt())


def pyjwt_decode(token: str) -> dict:
    return jwt.decode(
        token,
        KEY.public_key(),
        algorithms=[ALGORITHM],
        issuer=ISSUER,
        options={"require": ["exp", "sub", "iss"], "verify_iat": False},
    )


@pytest.mark.parametrize("name", REFUSED)
def test_refuses_what_pyjwt_refuses(name):
    token = refused_by_pyjwt()[name]
    with pytest.raises(jwt.PyJWTError):
        pyjwt_decode(token)
    with pytest.raises(Unauthorized):
        verify(token)


def test_accepts_what_pyjwt_accepts():
    token = issue_token(KEY, 8, True, 60)
    claims = pyjwt_decode(token)
    assert verify(token) == Principal(int(claims["sub"]), claims["adm"])
