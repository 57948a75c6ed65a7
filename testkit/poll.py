"""Poll until a condition holds: the one waiting loop of the tests, the benchmark and the stack."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class Deadline:
    def __init__(self, timeout: float, what: str):
        self.at = time.monotonic() + timeout
        self.timeout, self.what = timeout, what

    def check(self, last: object) -> None:
        if time.monotonic() >= self.at:
            raise TimeoutError(f"{self.what}: not within {self.timeout:g}s (last: {last!r})")


def wait_until(
    check: Callable[[], T], timeout: float = 30, what: str = "condition", interval: float = 0.1
) -> T:
    """Call check() until it returns something truthy and return that; TimeoutError past timeout."""
    deadline = Deadline(timeout, what)
    while not (result := check()):
        deadline.check(result)
        time.sleep(interval)
    return result


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    timeout: float = 30,
    what: str = "condition",
    interval: float = 0.1,
) -> T:
    """wait_until() in a coroutine: sleeps without blocking the event loop, and check may be
    a coroutine function."""
    deadline = Deadline(timeout, what)
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        deadline.check(result)
        await asyncio.sleep(interval)
