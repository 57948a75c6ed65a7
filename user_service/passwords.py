"""Salted scrypt password hashes; the work runs off the event loop, in a bounded pool."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from common.errors import ServiceUnavailable

T = TypeVar("T")

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


class HashingBusy(ServiceUnavailable):
    code = "busy"
    headers = {"Retry-After": "1"}


class HashPool:
    """A few threads for password work, and a bounded queue in front of them.

    Each hash costs tens of milliseconds of CPU. Without a bound a flood of logins queues
    without end, and every thread competes with the event loop for the cores, so /health
    and every other request slow down too. Past `threads + queue` jobs a request is refused
    at once (503 `busy`, Retry-After). A job counts until its thread is done with it, even
    if the client hung up meanwhile: hanging up cannot be used to slip past the bound.
    """

    def __init__(self, threads: int, queue: int):
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="passwords")
        self._limit = threads + queue
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, work: Callable[..., T], *args: object) -> T:
        if self._pending >= self._limit:
            raise HashingBusy("too many logins at once; try again in a second")
        loop = asyncio.get_running_loop()
        self._pending += 1
        job = self._executor.submit(work, *args)
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release))
        return await asyncio.wrap_future(job)

    def _release(self) -> None:
        self._pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
