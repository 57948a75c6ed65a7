"""The metrics' own logic: the tally adds up as prometheus-client would, the directory of the
workers' files, the settings."""

import os

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from activity_service.settings import ActivitySettings
from common.config import ConfigError
from common.runner import METRICS_DIR_ENV, prepare_metrics_dir
from common.telemetry.metrics import LATENCY_BUCKETS, Tally

BASE = {"SERVICE_TOKEN": "s3cret"}
VALUES = (0.0004, 0.001, 0.0011, 0.003, 0.003, 0.2, 0.99, 1.0, 3.0, 7.5, 0.025)


def pair(registry: CollectorRegistry, suffix: str) -> tuple[Counter, Histogram]:
    counter = Counter(f"c_{suffix}", "c", ["route", "status"], registry=registry)
    histogram = Histogram(f"h_{suffix}", "h", ["route"], buckets=LATENCY_BUCKETS, registry=registry)
    return counter, histogram


def test_a_flushed_tally_is_what_direct_calls_would_have_written():
    direct_registry, tallied_registry = CollectorRegistry(), CollectorRegistry()
    counter, histogram = pair(direct_registry, "x")
    tallied_counter, tallied_histogram = pair(tallied_registry, "x")
    tally = Tally()
    for number, value in enumerate(VALUES):
        status = "201" if number % 3 else "409"
        counter.labels("/a", status).inc()
        histogram.labels("/a").observe(value)
        tally.count(tallied_counter, ("/a", status))
        tally.observe(tallied_histogram, value, ("/a",))
        if number == 4:
            tally.flush()  # twice, and the second adds to the first
    tally.flush()
    assert _without_created(generate_latest(tallied_registry)) == _without_created(
        generate_latest(direct_registry)
    )


def _without_created(text: bytes) -> list[bytes]:
    return [line for line in text.splitlines() if b"_created" not in line]


def test_a_switched_off_tally_keeps_nothing():
    registry = CollectorRegistry()
    counter, histogram = pair(registry, "off")
    tally = Tally()
    tally.enabled = False
    tally.count(counter, ("/a", "200"))
    tally.observe(histogram, 0.1, ("/a",))
    assert tally.counts == {} and tally.observed == {}


def test_a_given_metrics_directory_is_emptied_and_kept(tmp_path, monkeypatch):
    (tmp_path / "counter_123.db").write_bytes(b"old counts")
    (tmp_path / "notes.txt").write_text("not ours")
    monkeypatch.setenv(METRICS_DIR_ENV, str(tmp_path))
    assert prepare_metrics_dir("activity_service") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_without_a_metrics_directory_a_fresh_one_is_made_and_set(monkeypatch):
    # Set, then removed: monkeypatch then restores the variable's absence after the test,
    # and the directory made here is gone before later tests in this process build apps.
    monkeypatch.setenv(METRICS_DIR_ENV, "")
    monkeypatch.delenv(METRICS_DIR_ENV)
    made = prepare_metrics_dir("order_service")
    try:
        assert made.is_dir() and list(made.iterdir()) == []
        assert os.environ[METRICS_DIR_ENV] == str(made) and "order_service" in made.name
    finally:
        made.rmdir()


def test_metrics_settings():
    settings = ActivitySettings.from_env(BASE)
    assert (settings.metrics, settings.metrics_port, settings.metrics_host) == ("on", None, None)
    moved = ActivitySettings.from_env(BASE | {"METRICS": "OFF", "METRICS_PORT": "9102"})
    assert (moved.metrics, moved.metrics_port) == ("off", 9102)
    with pytest.raises(ConfigError, match="METRICS"):
        ActivitySettings.from_env(BASE | {"METRICS": "maybe"})
    with pytest.raises(ConfigError, match="METRICS_PORT"):
        ActivitySettings.from_env(BASE | {"METRICS_PORT": "0"})
