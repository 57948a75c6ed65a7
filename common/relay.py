"""The relay loop both outboxes share: every interval, send what the outbox still holds.

activity_service relays new orders to order_service, and order_service relays
released units back; each writes its outbox row in the transaction that made
the change, tries to deliver it at once, and leaves the rest to this loop. The
receiving endpoints are idempotent, so a repeat is harmless (docs/seckill.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from common.retry import AsyncRetrying, backoff


async def relay_forever(
    resend_pending: Callable[[], Awaitable[int]],
    interval: float,
    peer: str,
    logger: logging.Logger,
) -> None:
    """Call resend_pending every interval, retrying for ever while the peer is away."""
    while True:
        await asyncio.sleep(interval)
        async for attempt in AsyncRetrying(
            retry_on=Exception,  # for ever: the peer may be away for a while
            wait=backoff(interval * 1.5, 2.0, factor=1.5),
            log=lambda exc, _: logger.warning("relay could not reach %s: %s", peer, exc),
        ):
            with attempt:
                sent = await resend_pending()
        if sent:
            logger.info("relay re-sent %s rows to %s", sent, peer)
