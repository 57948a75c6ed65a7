"""A flood of bodies with tens of thousands of unknown fields: each 422 stays small and
cheap, and the service's memory ends where it began (within 10%)."""

import asyncio
import re
import statistics
import time
from pathlib import Path

import orjson

from common.errors import MAX_LISTED_ERRORS

FIELDS = 70_000  # about 770 KB: under the 1 MiB body limit
SENDERS = 4
BODIES = 40  # per sender


def resident_bytes() -> int:
    """This process's resident memory, where the in-process services run."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024


async def test_a_flood_of_unknown_fields_gets_small_answers_and_leaves_memory_alone(api):
    body = orjson.dumps({f"f{n:05d}": 1 for n in range(FIELDS)})
    url = api.stack.url("user_service")
    headers = {"Content-Type": "application/json"}

    async def send(path: str) -> tuple[int, bytes]:
        async with api.session.post(url + path, data=body, headers=headers) as reply:
            return reply.status, await reply.read()

    for path in ("/tokens/refresh", "/tokens/revoke", "/users", "/tokens"):  # warm-up
        status, answer = await send(path)
        assert status == 422, (path, answer[:200])
        problem = orjson.loads(answer)
        assert len(problem["errors"]) <= MAX_LISTED_ERRORS
        assert problem["error_count"] >= FIELDS
        assert len(answer) < 4096
    livez: list[float] = []
    done = asyncio.Event()

    async def sender(bodies: int) -> None:
        for _ in range(bodies):
            status, answer = await send("/tokens/refresh")
            assert status == 422 and len(answer) < 4096

    # The connections' buffers sized for such bodies: what the flood starts from.
    await asyncio.gather(*(sender(2) for _ in range(SENDERS)))
    started = resident_bytes()

    async def prober() -> None:
        while not done.is_set():
            began = time.perf_counter()
            async with api.session.get(url + "/livez") as reply:
                assert reply.status == 200
            livez.append(time.perf_counter() - began)
            await asyncio.sleep(0.05)

    probing = asyncio.ensure_future(prober())
    await asyncio.gather(*(sender(BODIES) for _ in range(SENDERS)))
    done.set()
    await probing
    ended = resident_bytes()
    # The figures for the record (speed is the benchmarks' to judge, never a test's).
    memory = f"{started / 2**20:.0f} MB -> {ended / 2**20:.0f} MB"
    print(f"{memory}; livez median {statistics.median(livez) * 1000:.1f} ms during the flood")
    assert ended <= started * 1.10, memory
