"""A paced sale of buyers with tokens minted by the test (no sign-ups), as `make bench` does."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from common.auth import issue_token, load_private_key
from testkit.stack import Stack
from tests.support.factories import Api

SYNTHETIC_IDS_FROM = 20_000_000  # far above any id user_service hands out in a test stack


def buyer_tokens(stack: Stack, count: int, first_id: int = SYNTHETIC_IDS_FROM) -> list[str]:
    key = load_private_key((stack.tmp / "token_key.pem").read_text())
    return [issue_token(key, first_id + n, False, 3600) for n in range(count)]


async def paced_sale(
    api: Api, activity_id: int, requests: list[str], per_second: float, concurrency: int = 8
) -> Counter:
    """Each token in requests asks once, in that order, at about per_second requests;
    returns the answers' statuses."""
    statuses: Counter = Counter()
    gate = asyncio.Semaphore(concurrency)

    async def one(token: str, delay: float) -> None:
        await asyncio.sleep(delay)
        async with gate:
            statuses[(await api.seckill(activity_id, token)).status] += 1

    await asyncio.gather(*(one(t, n / per_second) for n, t in enumerate(requests)))
    return statuses


def shuffled_twice(tokens: list[str]) -> list[str]:
    """Every token asks twice, in a random order."""
    requests = tokens * 2
    random.shuffle(requests)
    return requests
