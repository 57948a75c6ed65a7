"""The sale dashboard's pure parts: stream tickets and percentiles from bucket counts."""

from activity_service.dashboard import (
    LATENCY_MS,
    TICKET_SECONDS,
    new_ticket,
    percentile,
    series,
    ticket_key,
    ticket_valid,
)

KEY = ticket_key("service-credential")


def test_a_ticket_is_good_for_a_minute_under_its_key_only():
    issued_at = 1_800_000_000.0
    ticket = new_ticket(KEY, now=issued_at)
    assert ticket_valid(KEY, ticket, now=issued_at + TICKET_SECONDS - 1)
    assert not ticket_valid(KEY, ticket, now=issued_at + TICKET_SECONDS)
    assert not ticket_valid(ticket_key("another credential"), ticket, now=issued_at)
    expires, _, signature = ticket.partition(".")
    later = str(int(expires) + 3600)
    assert not ticket_valid(KEY, f"{later}.{signature}", now=issued_at)  # a longer life, forged
    for broken in (
        None,
        "",
        ".",
        "abc.def",
        f"{expires}.",
        "1e9." + signature,
        "9" * 13 + ".",
        f"{expires}.é",
    ):
        assert not ticket_valid(KEY, broken, now=issued_at), broken


def test_percentiles_are_the_upper_bound_of_the_bucket_that_holds_them():
    buckets = [0] * (len(LATENCY_MS) + 1)
    assert percentile(buckets, 0.5) is None
    buckets[LATENCY_MS.index(5)] = 98  # 98 answers within 5 ms
    buckets[LATENCY_MS.index(200)] = 2  # 2 within 200 ms
    assert percentile(buckets, 0.5) == 5
    assert percentile(buckets, 0.99) == 200
    buckets[-1] = 100  # past the last bound
    assert percentile(buckets, 0.99) == LATENCY_MS[-1] * 2


def test_a_series_has_every_second_of_the_window_and_every_outcome():
    counts = {101: {"o:created": 3, "o:sold_out": 1, "l:0": 4}}
    points = series(counts, 100, 102)
    assert [p["t"] for p in points] == [100, 101, 102]
    assert points[1]["answers"]["created"] == 3 and points[1]["answers"]["sold_out"] == 1
    assert points[0]["answers"]["created"] == 0 and points[0]["p50_ms"] is None
    assert points[1]["p99_ms"] == LATENCY_MS[0]
