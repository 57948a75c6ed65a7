"""Slow clients meet deadlines for the request head and body; one that leaves is no 500."""

import asyncio
import logging

import pytest
import pytest_asyncio

from testkit.poll import eventually
from tests.support.apps import InProcessStack

DEADLINE = 1.0
# Far below any deadline: Sanic's own REQUEST_TIMEOUT, which restarts with every byte,
# would never fire for this client.
TRICKLE = 0.2


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(databases):
    stack = InProcessStack(
        databases,
        REQUEST_HEAD_TIMEOUT_SECONDS=str(DEADLINE),
        REQUEST_BODY_TIMEOUT_SECONDS=str(DEADLINE),
        ACCESS_LOG="true",
        LOG_LEVEL="INFO",
    )
    try:
        await stack.start()
        yield stack
    finally:
        await stack.stop()


async def trickle(stack, head: bytes, rest: bytes) -> tuple[bytes, int]:
    """Send head at once, then rest one byte per TRICKLE s while the server listens;
    returns what the server answered and how many bytes of rest it took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.ports["user_service"])
    writer.write(head)
    sent = 0
    try:
        for byte in rest:
            if reader.at_eof():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            sent += 1
            try:
                answer = await asyncio.wait_for(reader.read(65536), timeout=TRICKLE)
                return answer, sent
            except TimeoutError:
                continue
        raise AssertionError(f"the server took all {sent} bytes without closing")
    except ConnectionError:
        return b"", sent
    finally:
        writer.close()


def server_errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def access_statuses(caplog) -> list[int]:
    return [r.status for r in caplog.records if r.name == "seckill.access"]


async def test_a_head_sent_a_byte_at_a_time_is_cut_off_by_the_deadline(stack, caplog):
    caplog.set_level(logging.INFO)
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n"
    rest = b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    answer, sent = await trickle(stack, head, rest)
    # Closed by the deadline (1 s; checked every 0.5 s), long before the 200 bytes.
    assert sent * TRICKLE <= DEADLINE + 2, sent
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"code":"request_timeout"' in answer
    await eventually(lambda: 408 in access_statuses(caplog), 5, "the access line")
    assert server_errors(caplog) == []
    assert 500 not in access_statuses(caplog)


async def test_a_body_sent_a_byte_at_a_time_is_cut_off_by_the_deadline(stack, caplog):
    caplog.set_level(logging.INFO)
    body = b'{"username": "slowpoke", "password": "gravel-Mint-4417"}' + b" " * 200
    head = (
        b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    answer, sent = await trickle(stack, head, body)
    assert sent * TRICKLE <= DEADLINE + 2, sent
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert server_errors(caplog) == []
    assert stack.query("user_service", "SELECT 1 FROM users WHERE username = 'slowpoke'") == []


@pytest.mark.parametrize("sent", [b"GET /heal", b"GET /health HTTP/1.1\r\nHost: x\r\n"])
async def test_a_client_that_leaves_mid_head_is_not_logged_as_an_error(stack, caplog, sent):
    caplog.set_level(logging.INFO)
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.ports["user_service"])
    writer.write(sent)
    await writer.drain()
    await asyncio.sleep(TRICKLE)
    writer.close()
    await writer.wait_closed()
    # The server notices at once; give it a moment, then nothing may say "error" or 500.
    await asyncio.sleep(DEADLINE)
    assert server_errors(caplog) == []
    assert 500 not in access_statuses(caplog)


async def test_a_prompt_request_on_the_same_server_is_unaffected(stack):
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.ports["user_service"])
    for _ in range(3):  # keep-alive: each request has its own deadline
        writer.write(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        status = await reader.readline()
        assert status.startswith(b"HTTP/1.1 200"), status
        while (line := await reader.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        await asyncio.sleep(DEADLINE * 1.5)  # idle between requests is keep-alive's, not ours
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed_by_the_head_deadline(stack, caplog):
    caplog.set_level(logging.INFO)
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.ports["user_service"])
    try:
        # Closed by the head deadline (1 s, checked every 0.5 s) counted from the opening,
        # not held for the keep-alive timeout (75 s) that an idle connection gets.
        answer = await asyncio.wait_for(reader.read(), timeout=DEADLINE + 3)
    finally:
        writer.close()
    assert answer == b""
    assert server_errors(caplog) == []
