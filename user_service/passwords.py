"""Salted scrypt password hashes; the work runs off the event loop."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os

R, P = 8, 1


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _scrypt(password: str, salt: bytes, cost: int, r: int, p: int) -> bytes:
    n = 1 << cost
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 1024 * 1024, dklen=32
    )


def hash_password_sync(password: str, cost: int) -> str:
    salt = os.urandom(16)
    digest = _scrypt(password, salt, cost, R, P)
    return f"scrypt${cost}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password_sync(password: str, encoded: str) -> bool:
    try:
        scheme, cost, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(password, base64.b64decode(salt), int(cost), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, base64.b64decode(digest))


async def hash_password(password: str, cost: int) -> str:
    return await asyncio.to_thread(hash_password_sync, password, cost)


async def verify_password(password: str, encoded: str) -> bool:
    return await asyncio.to_thread(verify_password_sync, password, encoded)
