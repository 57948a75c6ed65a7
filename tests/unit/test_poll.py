"""The one polling helper: returns the first truthy value, or fails naming what it waited for."""

import pytest

from testkit.poll import eventually, wait_until


def counter(ready_at: int):
    calls = []

    def check() -> int:
        calls.append(1)
        return len(calls) if len(calls) >= ready_at else 0

    return check, calls


def test_wait_until_returns_the_first_truthy_value():
    check, calls = counter(3)
    assert wait_until(check, 5, interval=0.01) == 3
    assert len(calls) == 3


def test_wait_until_names_what_it_waited_for_on_timeout():
    with pytest.raises(TimeoutError, match=r"the outbox to drain: not within 0.05s \(last: 0\)"):
        wait_until(lambda: 0, 0.05, "the outbox to drain", interval=0.01)


async def test_eventually_awaits_coroutine_checks():
    calls = []

    async def check() -> bool:
        calls.append(1)
        return len(calls) == 2

    assert await eventually(check, 5, interval=0.01) is True
    with pytest.raises(TimeoutError, match="never"):
        await eventually(lambda: None, 0.05, "never", interval=0.01)
