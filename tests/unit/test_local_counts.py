"""The in-memory fixed windows of the rate limits (common/limits/local_counts.py)."""

from common.limits.local_counts import MIN_SWEEP, LocalCounts


def test_a_window_admits_its_amount_then_refuses_until_it_ends():
    counts = LocalCounts()
    assert [counts.hit(("k",), 3, 10, 100.0) for _ in range(3)] == [None] * 3
    assert counts.hit(("k",), 3, 10, 105.0) == 110.0  # the window began with the first
    assert counts.test(("k",), 3, 105.0) == 110.0
    assert counts.hit(("k",), 3, 10, 110.0) is None  # a new window
    assert counts.test(("k",), 3, 110.0) is None


def test_keys_count_apart_and_count_never_refuses():
    counts = LocalCounts()
    assert counts.hit(("a", "1"), 1, 10, 0.0) is None
    assert counts.hit(("a", "2"), 1, 10, 0.0) is None
    for _ in range(5):
        counts.count(("f",), 10, 0.0)
    assert counts.test(("f",), 5, 1.0) == 10.0
    assert counts.test(("f",), 6, 1.0) is None


def test_ended_windows_are_swept_once_the_table_has_grown():
    counts = LocalCounts()
    for n in range(MIN_SWEEP):
        counts.hit((str(n),), 1, 1, 0.0)
    counts.hit(("late",), 1, 1, 5.0)  # every earlier window has ended: swept
    assert len(counts._windows) == 1
