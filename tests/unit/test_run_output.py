"""What `make run` does with each line the services write (devtools/output.py)."""

import json
from pathlib import Path

import pytest

from devtools.output import TERMINAL, Output, access_log_target


def record(logger: str, level: str, msg: str, **extra) -> str:
    line = {"ts": "2026-12-07T13:02:03.000+00:00", "level": level, "logger": logger, "msg": msg}
    return json.dumps({**line, "service": "order_service", **extra}) + "\n"


@pytest.fixture
def local(tmp_path) -> Path:
    return tmp_path / ".local"


def test_requests_go_to_the_access_log_and_the_rest_to_the_services_log(local, capsys):
    output = Output(local / "services.log", local / "access.log")
    request = record("seckill.access", "INFO", "GET /orders 200", status=200, duration_ms=1.5)
    output.line("order_service", request)
    output.line("order_service", record("sanic.server", "INFO", "Starting worker [7]"))
    output.close()
    shown = capsys.readouterr()
    assert shown.out == shown.err == ""  # nothing for the terminal
    assert (local / "access.log").read_text() == request
    assert "Starting worker [7]" in (local / "services.log").read_text()
    assert "GET /orders" not in (local / "services.log").read_text()


def test_warnings_and_errors_reach_the_terminal_readable_and_early_ones_are_kept(local, capsys):
    output = Output(local / "services.log", local / "access.log")
    output.line("order_service", record("seckill", "WARNING", "Consul is not answering"))
    failure = record("sanic.error", "ERROR", "Exception occurred", exc="Traceback\n  boom")
    output.line("order_service", failure)
    output.line("order_service", "order_service: port 8003 is already in use\n")
    output.banner("  seckill is ready:")
    output.line("order_service", record("seckill", "WARNING", "later"))
    output.close()
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith(" order_service warning: Consul is not answering")
    assert err[0][:8].count(":") == 2  # the local time, HH:MM:SS
    assert err[1].endswith(" order_service error: Exception occurred")
    assert err[2:4] == ["    Traceback", "      boom"]
    assert err[4] == "order_service: port 8003 is already in use"  # not JSON: as it came
    assert err[5].endswith(" order_service warning: later")
    # Only the warning before the banner is repeated under it.
    assert output.early_warnings == [err[0]]
    log = (local / "services.log").read_text()
    assert "Consul is not answering" in log and '"msg":"the ready banner is shown"' in log


def test_the_banner_repeats_the_early_warnings(local, capsys):
    output = Output(local / "services.log", None)
    output.say("warning: .env sets SECKILL_DB_PREFX, which nothing reads", warning=True)
    output.banner("  seckill is ready:")
    output.close()
    out = capsys.readouterr().out
    assert out.startswith("  seckill is ready:\n  warnings at start-up (also above):\n")
    assert "    warning: .env sets SECKILL_DB_PREFX, which nothing reads" in out


def test_each_worker_ready_line_is_counted(local):
    output = Output(local / "services.log", None)
    for pid in (11, 12):
        output.line("activity_service", record("seckill.workers", "INFO", "worker ready", pid=pid))
    output.line("activity_service", record("sanic.server", "INFO", "Worker ready [11]"))
    output.close()
    assert output.ready == {"activity_service": 2}


def test_the_access_log_in_the_terminal_or_nowhere(local, capsys):
    request = record("seckill.access", "INFO", "GET /orders 200", status=200, duration_ms=1.5)
    here = Output(local / "services.log", TERMINAL)
    here.line("order_service", request)
    here.close()
    assert capsys.readouterr().out.endswith(" order_service GET /orders 200 1.5 ms\n")
    off = Output(local / "services.log", None)
    off.line("order_service", request)
    off.close()
    assert capsys.readouterr().out == "" and not (local / "access.log").exists()


@pytest.mark.parametrize(
    ("value", "target"),
    [
        (None, "default"),
        ("", "default"),
        ("true", "default"),
        ("1", "default"),
        ("false", None),
        ("OFF", None),
        ("0", None),
        ("-", TERMINAL),
        ("/tmp/requests.log", Path("/tmp/requests.log")),
    ],
)
def test_access_log_setting_under_make_run(value, target):
    default = Path(".local/access.log")
    assert access_log_target(value, default) == (default if target == "default" else target)
