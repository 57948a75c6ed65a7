"""Access tokens: issued with the private key, verified with the public one, nothing else."""

import asyncio
import base64
import gc
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
    AUDIENCE,
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
NOW = int(time.time())
CLAIMS = {
    "sub": "1",
    "adm": True,
    "iat": NOW,
    "exp": NOW + 3000,  # within the cap, and valid however long the suite runs first
    "iss": ISSUER,
    "aud": AUDIENCE,
    "jti": "a1",
}


NO_CHECKS = {"verify_signature": False}


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


def test_cached_tokens_are_left_out_of_the_garbage_collectors_walks():
    """A sale caches a token per buyer: entries the cyclic collector tracks would make each
    full collection walk them all (tens of ms per 100,000, in every worker)."""
    verifier = TokenVerifier(KEY.public_key())
    tokens = [issue_token(KEY, user, False, 60) for user in (5, 6)]
    for token in tokens:
        verify(token, verifier)
    gc.collect()  # a collection stops tracking the tuples that hold only atoms
    entries = [verifier._cache[token] for token in tokens]
    assert [entry[:2] for entry in entries] == [(5, False), (6, False)]
    assert not any(gc.is_tracked(entry) for entry in entries)
    # and a cached token still names its user
    assert [verify(token, verifier) for token in tokens] == [
        Principal(5, False),
        Principal(6, False),
    ]


def test_claims():
    claims = jwt.decode(
        issue_token(KEY, 7, False, 300),
        KEY.public_key(),
        algorithms=[ALGORITHM],
        issuer=ISSUER,
        audience=AUDIENCE,
    )
    assert claims["sub"] == "7" and claims["adm"] is False and claims["aud"] == AUDIENCE
    assert len(claims["jti"]) >= 16
    assert claims["jti"] != jwt.decode(issue_token(KEY, 7, False, 300), options=NO_CHECKS)["jti"]
    assert 299 < claims["exp"] - claims["iat"] <= 300 and abs(claims["iat"] - time.time()) < 5
    assert isinstance(claims["exp"], int)


def test_iat_has_milliseconds():
    claims = jwt.decode(issue_token(KEY, 7, False, 300, 1_796_000_000_123), options=NO_CHECKS)
    assert claims["iat"] == 1_796_000_000.123 and claims["exp"] == 1_796_000_300


# Revocation marks (common/revocations.py): a user's tokens issued before the mark are refused.
def revoked_in_one_second() -> tuple[TokenVerifier, dict[str, str], int]:
    """Tokens of one second around a mark in its middle, the mark taken now (not at import:
    a whole suite may run between collection and this test)."""
    mark_ms = int(time.time()) * 1000 + 500
    verifier = TokenVerifier(KEY.public_key())
    tokens = {
        "before": issue_token(KEY, 5, False, 600, mark_ms - 1),
        "at": issue_token(KEY, 5, False, 600, mark_ms),
        "after": issue_token(KEY, 5, False, 600, mark_ms + 1),
        "other_user": issue_token(KEY, 6, False, 600, mark_ms - 1),
    }
    return verifier, tokens, mark_ms


@pytest.mark.parametrize("remembered", [False, True], ids=["fresh", "remembered"])
def test_a_mark_refuses_the_users_older_tokens_to_the_millisecond(remembered):
    verifier, tokens, mark_ms = revoked_in_one_second()
    if remembered:  # verified once before the mark: the cache must not keep it alive
        for token in tokens.values():
            verify(token, verifier)
    verifier.set_revocations({5: mark_ms / 1000})
    with pytest.raises(Unauthorized) as refused:
        verify(tokens["before"], verifier)
    assert refused.value.code == "token_revoked"
    # issued in the same second, but not before the mark: valid
    assert verify(tokens["at"], verifier) == Principal(5, False)
    assert verify(tokens["after"], verifier) == Principal(5, False)
    assert verify(tokens["other_user"], verifier) == Principal(6, False)


def test_a_list_read_later_replaces_the_last_and_revoke_keeps_the_latest_mark():
    verifier, tokens, mark_ms = revoked_in_one_second()
    verifier.revoke(5, mark_ms / 1000)
    verifier.revoke(5, (mark_ms - 10) / 1000)  # an older mark never reopens tokens
    with pytest.raises(Unauthorized):
        verify(tokens["before"], verifier)
    verifier.set_revocations({7: mark_ms / 1000})  # read before the mark reached the list
    with pytest.raises(Unauthorized):
        verify(tokens["before"], verifier)  # this worker's own mark is kept


def test_a_mark_ends_with_the_longest_lifetime_of_a_token_issued_before_it():
    verifier, tokens, mark_ms = revoked_in_one_second()
    verifier.set_revocations({5: mark_ms / 1000})
    with pytest.raises(Unauthorized):
        verify(tokens["before"], verifier)
    verifier.set_revocations({})  # the mark has left the list (past the tokens' lifetime)
    assert verify(tokens["before"], verifier) == Principal(5, False)
    verifier.revoke(5, (time.time() - 3601))  # an own mark as old as the cap is dropped
    verifier.set_revocations({})
    assert verifier._not_before == {}


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


def without(claims: dict, name: str) -> dict:
    return {key: value for key, value in claims.items() if key != name}


INVALID = {
    "empty": "",
    "word": "abc",
    "dots": "a.b.c",
    "alg-none": jwt.encode(CLAIMS, None, algorithm="none"),
    "hmac": jwt.encode(CLAIMS, "k" * 32, algorithm="HS256"),
    "eddsa": jwt.encode(CLAIMS, Ed25519PrivateKey.generate(), algorithm="EdDSA"),
    "rs512": jwt.encode(CLAIMS, KEY, algorithm="RS512"),
    "ps256": jwt.encode(CLAIMS, KEY, algorithm="PS256"),
    "issuer": jwt.encode(CLAIMS | {"iss": "elsewhere"}, KEY, algorithm=ALGORITHM),
    "no-exp": jwt.encode(without(CLAIMS, "exp"), KEY, algorithm=ALGORITHM),
    "no-sub": jwt.encode(without(CLAIMS, "sub"), KEY, algorithm=ALGORITHM),
    "bad-sub": jwt.encode(CLAIMS | {"sub": "alice"}, KEY, algorithm=ALGORITHM),
    # The findings of issue 15: no audience checked, a token for ten years accepted.
    "no-aud": jwt.encode(without(CLAIMS, "aud"), KEY, algorithm=ALGORITHM),
    "other-aud": jwt.encode(CLAIMS | {"aud": "another-api"}, KEY, algorithm=ALGORITHM),
    "aud-list-without-us": jwt.encode(CLAIMS | {"aud": ["a", "b"]}, KEY, algorithm=ALGORITHM),
    "ten-years": jwt.encode(CLAIMS | {"exp": NOW + 10 * 365 * 86400}, KEY, algorithm=ALGORITHM),
    "past-the-cap": jwt.encode(CLAIMS | {"exp": NOW + 3601}, KEY, algorithm=ALGORITHM),
    "no-iat": jwt.encode(without(CLAIMS, "iat"), KEY, algorithm=ALGORITHM),
    "iat-ahead": jwt.encode(
        CLAIMS | {"iat": NOW + 3000, "exp": NOW + 3600}, KEY, algorithm=ALGORITHM
    ),
    "no-jti": jwt.encode(without(CLAIMS, "jti"), KEY, algorithm=ALGORITHM),
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
        "no-iss": jwt.encode(without(CLAIMS, "iss"), KEY, algorithm=ALGORITHM),
        "sub-number": jwt.encode(CLAIMS | {"sub": 1}, KEY, algorithm=ALGORITHM),
        "exp-text": jwt.encode(CLAIMS | {"exp": "soon"}, KEY, algorithm=ALGORITHM),
        "forged": jwt.encode(CLAIMS, FORGER, algorithm=ALGORITHM),
        **non_canonical(now),
    }


def unpadded(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def respelled(token: str, segment: int) -> str:
    """token with one segment's last character changed to another spelling of the same bytes
    (its lowest bit, which no byte uses, set or cleared)."""
    parts = token.split(".")
    assert len(parts[segment]) % 4 in (2, 3), "this segment has no unused bits"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(parts[segment][-1]) ^ 1]
    parts[segment] = parts[segment][:-1] + last
    respelled = ".".join(parts)
    assert respelled != token and unpadded(parts[segment]) == unpadded(token.split(".")[segment])
    return respelled


def with_slack(segment: int, now: int) -> str:
    """A genuine token whose header (0) or claims (1) segment ends in a character with
    unused bits: the jti is lengthened until it does."""
    for size in range(1, 5):
        headers = {"kid": "k" * size} if segment == 0 else None
        claims = CLAIMS | {"exp": now + 3000, "jti": "j" * size}
        token = jwt.encode(claims, KEY, algorithm=ALGORITHM, headers=headers)
        if len(token.split(".")[segment]) % 4 in (2, 3):
            return token
    raise AssertionError("no length gave the segment unused bits")


def non_canonical(now: int) -> dict[str, str]:
    """Each segment of a genuine token spelled another way (issue 29): PyJWT refuses them."""
    return {
        "signature-respelled": respelled(issue_token(KEY, 3, False, 60), 2),
        "header-respelled": respelled(with_slack(0, now), 0),
        "claims-respelled": respelled(with_slack(1, now), 1),
    }


FORGER = rsa.generate_private_key(65537, 2048)
REFUSED = list(refused_by_pyjwt())


def pyjwt_decode(token: str) -> dict:
    return jwt.decode(
        token,
        KEY.public_key(),
        algorithms=[ALGORITHM],
        issuer=ISSUER,
        audience=AUDIENCE,
        options={"require": ["exp", "sub", "iss", "aud", "iat", "jti"]},
    )


def pyjwt_lifetime_holds(token: str, cap: int = 3600) -> None:
    """PyJWT has no lifetime cap: the one check added to its refusals, done the same way."""
    claims = pyjwt_decode(token)
    if claims["exp"] - claims["iat"] > cap:
        raise jwt.InvalidTokenError("lifetime over the cap")


@pytest.mark.parametrize("name", REFUSED)
def test_refuses_what_pyjwt_refuses(name):
    token = refused_by_pyjwt()[name]
    with pytest.raises(jwt.PyJWTError):
        pyjwt_lifetime_holds(token)
    with pytest.raises(Unauthorized):
        verify(token)


def test_accepts_what_pyjwt_accepts():
    token = issue_token(KEY, 8, True, 60)
    claims = pyjwt_decode(token)
    assert verify(token) == Principal(int(claims["sub"]), claims["adm"])


@pytest.mark.parametrize(
    "changes",
    [{"aud": [AUDIENCE, "another-api"]}, {"exp": NOW + 3600}, {"iat": NOW + 10}],
    ids=["aud-list-naming-us", "exactly-the-cap", "iat-within-the-skew"],
)
def test_accepts_what_pyjwt_accepts_within_the_cap(changes):
    token = jwt.encode(CLAIMS | changes, KEY, algorithm=ALGORITHM)
    if "iat" not in changes:  # PyJWT allows no skew at all for iat
        pyjwt_lifetime_holds(token)
    assert verify(token) == Principal(1, True)


def test_the_lifetime_cap_is_the_verifiers_own():
    token = issue_token(KEY, 9, False, 600)
    assert verify(token, TokenVerifier(KEY.public_key(), max_ttl=600)) == Principal(9, False)
    with pytest.raises(Unauthorized):
        verify(token, TokenVerifier(KEY.public_key(), max_ttl=599))


@pytest.mark.parametrize("segment", [0, 1], ids=["header", "claims"])
def test_a_token_with_unused_bits_is_accepted_in_its_canonical_spelling(segment):
    token = with_slack(segment, int(time.time()))
    pyjwt_lifetime_holds(token)
    assert verify(token) == Principal(1, True)
