"""Fixed-window counts in this process's memory: the rate limits without Redis.

A key's window starts with its first request and lasts the limit's period. A plain
dict, swept of ended windows once it has doubled since the last sweep, so a check
costs a lookup and an add (the `limits` library's memory storage rescans every key
every few milliseconds and takes a lock per hit: docs/seckill.md).
"""

from __future__ import annotations

MIN_SWEEP = 1024


class LocalCounts:
    """One per worker. Keys are tuples; times are wall-clock seconds (time.time())."""

    def __init__(self):
        self._windows: dict[tuple, list] = {}  # key -> [wall time the window ends, count]
        self._sweep_at = MIN_SWEEP

    def hit(self, key: tuple, amount: int, period: int, now: float) -> float | None:
        """Count one request: None if it is within amount, else when its window ends."""
        window = self._windows.get(key)
        if window is None or window[0] <= now:
            self._start(key, period, now)
            return None
        if window[1] >= amount:
            return window[0]
        window[1] += 1
        return None

    def test(self, key: tuple, amount: int, now: float) -> float | None:
        """When the window ends if amount is used up, else None; counts nothing."""
        window = self._windows.get(key)
        if window is None or window[0] <= now or window[1] < amount:
            return None
        return window[0]

    def count(self, key: tuple, period: int, now: float) -> None:
        """Count one event whatever the total."""
        window = self._windows.get(key)
        if window is None or window[0] <= now:
            self._start(key, period, now)
        else:
            window[1] += 1

    def _start(self, key: tuple, period: int, now: float) -> None:
        if len(self._windows) >= self._sweep_at:
            self._windows = {k: w for k, w in self._windows.items() if w[0] > now}
            self._sweep_at = max(MIN_SWEEP, 2 * len(self._windows))
        self._windows[key] = [now + period, 1]
