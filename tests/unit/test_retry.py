"""common.retry: what is retried, how often, how long it waits, and what comes out."""

import asyncio
import time

import pymysql
import pytest

from common.db import (
    DEADLOCK,
    DUPLICATE_KEY,
    LOCK_WAIT_TIMEOUT,
    MAX_ATTEMPTS,
    RECORD_CHANGED,
    RETRYABLE,
    Database,
)
from common.retry import AsyncRetrying, Retrying, backoff


class Flaky:
    """Fails with the given errors in turn, then answers with its call count."""

    def __init__(self, *errors: BaseException):
        self.errors, self.calls = list(errors), 0

    def __call__(self) -> int:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.calls


async def run(flaky: Flaky, **policy) -> int:
    async for attempt in AsyncRetrying(**policy):
        with attempt:
            return flaky()


def no_wait(number: int) -> float:
    return 0.0


async def test_retries_until_an_attempt_succeeds():
    flaky = Flaky(OSError("a"), OSError("b"))
    assert await run(flaky, retry_on=OSError, attempts=3, wait=no_wait) == 3


async def test_the_last_error_comes_out_unchanged_once_attempts_run_out():
    last = OSError("c")
    flaky = Flaky(OSError("a"), OSError("b"), last, OSError("never reached"))
    with pytest.raises(OSError) as info:
        await run(flaky, retry_on=OSError, attempts=3, wait=no_wait)
    assert info.value is last and flaky.calls == 3


async def test_an_error_not_retried_comes_out_at_once():
    flaky = Flaky(ValueError("bad"), OSError("x"))
    with pytest.raises(ValueError):
        await run(flaky, retry_on=OSError, attempts=5, wait=no_wait)
    assert flaky.calls == 1


async def test_a_predicate_chooses_what_is_retried():
    flaky = Flaky(OSError(1, "retry me"), OSError(2, "not me"))
    with pytest.raises(OSError, match="not me"):
        await run(flaky, retry_on=lambda exc: exc.errno == 1, attempts=5, wait=no_wait)
    assert flaky.calls == 2


async def test_waits_and_logs_between_attempts():
    waits, logged = [], []

    def wait(number: int) -> float:
        waits.append(number)
        return 0.001

    flaky = Flaky(OSError("a"), OSError("b"))
    log = lambda exc, number: logged.append((str(exc), number))  # noqa: E731
    assert await run(flaky, retry_on=OSError, attempts=3, wait=wait, log=log) == 3
    assert waits == [1, 2] and logged == [("a", 1), ("b", 2)]


async def test_a_deadline_ends_the_retries():
    flaky = Flaky(*[OSError(str(n)) for n in range(1000)])
    started = time.monotonic()
    with pytest.raises(OSError):
        await run(flaky, retry_on=OSError, deadline=0.1, wait=lambda n: 0.02)
    assert 0.1 <= time.monotonic() - started < 1.0 and 3 <= flaky.calls < 20


async def test_without_a_limit_it_keeps_trying():
    flaky = Flaky(*[OSError(str(n)) for n in range(50)])
    assert await run(flaky, retry_on=OSError, wait=no_wait) == 51


async def test_cancellation_is_never_retried():
    flaky = Flaky(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await run(flaky, retry_on=BaseException, attempts=5, wait=no_wait)
    assert flaky.calls == 1


def test_blocking_code_gets_the_same_policy():
    flaky = Flaky(OSError("a"))
    for attempt in Retrying(retry_on=OSError, attempts=2, wait=no_wait):
        with attempt:
            result = flaky()
    assert result == 2 and attempt.number == 2


def test_backoff_grows_to_its_ceiling():
    wait = backoff(0.2, 5.0)
    assert [wait(n) for n in range(1, 8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert [backoff(1.5, 2.0, factor=1.5)(n) for n in (1, 2, 3)] == [1.5, 2.0, 2.0]


def mysql_error(code: int) -> pymysql.err.OperationalError:
    return pymysql.err.OperationalError(code, "from the test")


async def database_retrying(flaky: Flaky, retryable: set[int]) -> list[int]:
    numbers = []

    async def attempt(number: int) -> int:
        numbers.append(number)
        return flaky()

    await Database._retrying(attempt, "test", retryable)
    return numbers


async def test_a_transaction_is_retried_on_deadlock_with_the_attempt_numbered():
    flaky = Flaky(
        mysql_error(DEADLOCK), mysql_error(LOCK_WAIT_TIMEOUT), mysql_error(RECORD_CHANGED)
    )
    assert await database_retrying(flaky, RETRYABLE) == [1, 2, 3, 4]


async def test_a_transaction_gives_up_after_the_last_attempt():
    flaky = Flaky(*[mysql_error(DEADLOCK) for _ in range(MAX_ATTEMPTS + 1)])
    with pytest.raises(pymysql.err.OperationalError):
        await database_retrying(flaky, RETRYABLE)
    assert flaky.calls == MAX_ATTEMPTS == 8


async def test_a_duplicate_key_is_retried_only_where_asked():
    with pytest.raises(pymysql.err.OperationalError):
        await database_retrying(Flaky(mysql_error(DUPLICATE_KEY)), RETRYABLE)
    assert await database_retrying(Flaky(mysql_error(DUPLICATE_KEY)), RETRYABLE | {1062}) == [1, 2]
    with pytest.raises(ValueError):
        await database_retrying(Flaky(ValueError("not SQL")), RETRYABLE)
