"""The first ten minutes: `make run`, `make demo`, `make stop`, in a copy of the checkout.

Each test copies the checkout (sharing its .venv) so that its `.env`, `.local/`
and pid file are its own, runs on free ports under a random `sktest_` prefix,
and afterwards looks through the process table for anything still running
from the copy.
"""

from __future__ import annotations

import json
import os
import pty
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from testkit.poll import wait_until
from testkit.stack import ROOT, SERVICES, free_port, mysql_connect

# The tests are not about installing: the shared .venv is up to date, so make may skip it.
MAKE = ["make", "--no-print-directory", "-o", ".venv/.installed-run"]
READY = "seckill is ready"


def documented_variables() -> set[str]:
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env_template").read_text(), re.M))


def processes_from(directory: Path) -> list[str]:
    """Every process whose working directory is in directory: what a run started from there."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cwd == str(directory) or cwd.startswith(f"{directory}/"):
            found.append(f"{entry.name}: {cmdline}")
    return found


class Checkout:
    """A copy of the checkout with its own .env, on free ports under a fresh prefix."""

    def __init__(self, path: Path):
        self.path = path
        self.prefix = "sktest_" + secrets.token_hex(4)
        self.ports = {name: free_port() for name in SERVICES}
        tracked = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.split(b"\0")
        for name in filter(None, tracked):
            source = ROOT / name.decode()
            if source.is_file() and not source.is_symlink():
                (path / name.decode()).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, path / name.decode())
        (path / ".venv").symlink_to((ROOT / ".venv").resolve())
        # The caller's settings must not win over the copy's .env; only MySQL's login is kept.
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k.startswith("MYSQL_") or not (k in documented_variables() or k.startswith("OTEL_"))
        }
        for key in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS"):
            self.env.pop(key, None)
        self.write_env()
        # The secrets a first run generates, made now so that a run's output is only its own.
        self.python("-m", "devtools.local", "env")

    def write_env(self, **extra: str) -> None:
        values = {
            "SECKILL_DB_PREFIX": self.prefix,
            "PASSWORD_HASH_COST": "10",
            **{f"{n.upper()}_PORT": str(p) for n, p in self.ports.items()},
            **{f"{n.upper()}_URL": f"http://127.0.0.1:{p}" for n, p in self.ports.items()},
            **extra,
        }
        (self.path / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))

    def python(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [".venv/bin/python", *args],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )

    def make(self, *targets: str, timeout: float = 60, make=MAKE) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*make, *targets],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self) -> subprocess.Popen:
        """`make run` in the background, its output in run.log."""
        self.log_file = self.path / "run.log"
        return subprocess.Popen(
            [*MAKE, "run"],
            cwd=self.path,
            env=self.env,
            stdout=self.log_file.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_file.read_text()

    def wait_for(self, run: subprocess.Popen, text: str, timeout: float = 120) -> None:
        def shown() -> bool:
            assert run.poll() is None, f"make run ended with {run.returncode}:\n{self.log()}"
            return text in self.log()

        wait_until(shown, timeout, f"{text!r} in the log of make run", interval=0.2)

    def secrets(self) -> dict[str, str]:
        lines = (self.path / ".local" / "secrets.env").read_text().split()
        return dict(line.split("=", 1) for line in lines)

    def clean_up(self) -> None:
        for line in processes_from(self.path):
            try:
                os.kill(int(line.split(":")[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass
        with mysql_connect() as conn, conn.cursor() as cur:
            for suffix in ("user", "activity", "order"):
                cur.execute(f"DROP DATABASE IF EXISTS `{self.prefix}_{suffix}`")


@pytest.fixture
def checkout(tmp_path):
    checkout = Checkout(tmp_path / "seckill")
    yield checkout
    checkout.clean_up()


def run_until_exit(checkout: Checkout, timeout: float = 60) -> tuple[int, str]:
    run = checkout.start()
    try:
        code = run.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        pytest.fail(f"make run did not stop within {timeout}s:\n{checkout.log()}")
    return code, checkout.log()


def at_a_terminal(
    checkout: Checkout, *targets: str, typed: str = "", timeout: float = 60
) -> tuple[int, str]:
    """`make TARGETS` as a person runs it: a terminal its input and its output; typed is what
    they type. The exit status and everything the terminal showed."""
    terminal, device = pty.openpty()
    run = subprocess.Popen(
        [*MAKE, *targets],
        cwd=checkout.path,
        env=checkout.env,
        stdin=device,
        stdout=device,
        stderr=device,
        start_new_session=True,
    )
    os.close(device)
    os.write(terminal, typed.encode())
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([terminal], [], [], 0.2)[0]:
                if run.poll() is not None:
                    break
                continue
            try:
                data = os.read(terminal, 4096)
            except OSError:  # EIO: every process holding the terminal has closed it
                break
            if not data:
                break
            shown += data
        code = run.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        pytest.fail(f"make {' '.join(targets)} did not end within {timeout}s:\n{shown.decode()}")
    finally:
        os.close(terminal)
    return code, shown.decode().replace("\r\n", "\n")


def own_lines(output: str) -> list[str]:
    """The output minus make's echo of the command and its own failure line."""
    return [
        line
        for line in output.splitlines()
        if line.strip() and not line.startswith((".venv/bin/python", "make: ***"))
    ]


def test_a_port_in_use_is_named_and_nothing_is_left_behind(checkout):
    port = checkout.ports["user_service"]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        code, output = run_until_exit(checkout)
        left = processes_from(checkout.path)
    assert code != 0
    assert f"port {port} (user_service) is already in use" in output
    assert "USER_SERVICE_PORT" in output
    assert "Traceback" not in output and len(own_lines(output)) <= 2, output
    assert left == [], "\n".join(left)


def test_mysql_on_a_closed_port_is_one_line_naming_host_and_port(checkout):
    port = free_port()
    checkout.write_env(MYSQL_HOST="127.0.0.1", MYSQL_PORT=str(port))
    checkout.env.pop("MYSQL_PORT", None)
    checkout.env.pop("MYSQL_HOST", None)
    code, output = run_until_exit(checkout)
    assert code != 0
    assert f"cannot reach MySQL at 127.0.0.1:{port}: is it running?" in output
    assert "see MYSQL_HOST/MYSQL_PORT in .env" in output
    assert "Traceback" not in output and len(own_lines(output)) <= 2, output
    assert processes_from(checkout.path) == []


def test_mysql_with_a_wrong_password_names_the_user_and_the_setting(checkout):
    user = os.environ.get("MYSQL_USER", "root")
    checkout.write_env(MYSQL_PASSWORD="not-the-password-" + secrets.token_hex(4))
    checkout.env.pop("MYSQL_PASSWORD", None)
    code, output = run_until_exit(checkout)
    host = os.environ.get("MYSQL_HOST", "127.0.0.1")
    port = os.environ.get("MYSQL_PORT", "3306")
    assert code != 0
    assert f"MySQL at {host}:{port} denied access to user '{user}'" in output, output
    assert "MYSQL_PASSWORD in .env" in output
    assert "Traceback" not in output and len(own_lines(output)) <= 2, output
    assert processes_from(checkout.path) == []


def test_a_failed_start_at_a_terminal_ends_with_our_one_line(checkout):
    port = checkout.ports["order_service"]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        code, shown = at_a_terminal(checkout, "run")
        left = processes_from(checkout.path)
    lines = [line for line in shown.splitlines() if line.strip()]
    # Only our line: no echo of the command, and none of make's `make: *** [...] Error 1`.
    assert lines == [
        f"make run: port {port} (order_service) is already in use: stop what holds it, "
        "or set ORDER_SERVICE_PORT in .env to another port"
    ], shown
    assert code == 0  # at a terminal; without one (the tests above) the status is non-zero
    assert left == [], "\n".join(left)


def test_an_unknown_variable_in_env_is_named_with_the_closest_known_one(checkout):
    # On a closed MySQL port the run stops right after reading .env.
    checkout.write_env(SECKILL_DB_PREFX="typo", MYSQL_PORT=str(free_port()))
    checkout.env.pop("MYSQL_PORT", None)
    _, output = run_until_exit(checkout)
    assert "SECKILL_DB_PREFX" in output and "did you mean SECKILL_DB_PREFIX?" in output, output
    assert "PASSWORD_HASH_COST" not in output  # known names are not warned about


def test_make_run_installs_only_the_runtime_requirements(checkout):
    (checkout.path / ".venv").unlink()
    plan = checkout.make("-n", "run", make=["make"]).stdout
    assert "pip install -r requirements.txt" in plan
    assert "requirements-dev.txt" not in plan
    assert "--quiet" not in plan and "installing" in plan
    assert "requirements-dev.txt" in checkout.make("-n", "test", make=["make"]).stdout


def test_make_help_is_the_default_and_lists_every_target(checkout):
    output = checkout.make().stdout
    makefile = (checkout.path / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.M))
    for target in ("run", "stop", "reset", "demo", "test", "help"):
        assert re.search(rf"^  make {target} +\S", output, re.M), output
    listed = set(re.findall(r"^  make (\S+)", output, re.M))
    assert listed <= targets and len(listed) >= 10


def abandon_a_health_check(ports) -> None:
    """GET /health and hang up at once, as a probe with a short timeout does during a boot."""
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.connect(("127.0.0.1", port))
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            except OSError:
                pass


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One `make run` for the tests that use a running stack; the last one stops it."""
    checkout = Checkout(tmp_path_factory.mktemp("live") / "seckill")
    checkout.write_env(SECKILL_DB_PREFX="typo")  # a misspelt key: a warning, not an error
    run = checkout.start()
    try:

        def ready() -> bool:
            assert run.poll() is None, checkout.log()
            abandon_a_health_check(checkout.ports.values())
            return READY in checkout.log()

        wait_until(ready, 120, "the ready banner", interval=0.05)
        yield checkout, run
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGTERM)
            run.wait(timeout=30)
        checkout.clean_up()


def test_the_ready_banner_names_the_urls_the_docs_the_admin_and_how_to_stop(live):
    checkout, _ = live
    banner = checkout.log().split(READY, 1)[1]
    for name, port in checkout.ports.items():
        assert re.search(
            rf"{name} +http://127\.0\.0\.1:{port} +Swagger UI http://127\.0\.0\.1:{port}/docs",
            banner,
        ), banner
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
            assert reply.status == 200
    admin = checkout.secrets()
    assert f"admin login: {admin['ADMIN_USERNAME']} / {admin['ADMIN_PASSWORD']}" in banner
    assert "Ctrl-C" in banner and "make stop" in banner
    shop = f"http://127.0.0.1:{checkout.ports['activity_service']}/shop"
    assert f"try a sale in the shop: {shop}" in banner, banner
    with urllib.request.urlopen(shop, timeout=5) as reply:
        assert reply.status == 200 and b"seckill shop" in reply.read()


def test_the_banner_waits_for_every_worker(live):
    checkout, _ = live
    # make run writes into the services' log when it shows the banner: what came before it.
    log = (checkout.path / ".local" / "services.log").read_text()
    before = log.split('"msg":"the ready banner is shown"', 1)[0]
    ready = [
        json.loads(line)["service"]
        for line in before.splitlines()
        if '"logger":"seckill.workers"' in line and '"msg":"worker ready"' in line
    ]
    # activity_service runs two workers under make run (ACTIVITY_SERVICE_WORKERS).
    expected = ["activity_service", "activity_service", "order_service", "user_service"]
    assert sorted(ready) == expected and len(before) < len(log), log


def test_warnings_at_start_up_are_repeated_under_the_banner(live):
    checkout, _ = live
    before, banner = checkout.log().split(READY, 1)
    warning = "warning: .env sets SECKILL_DB_PREFX, which nothing reads; did you mean"
    assert warning in before and warning in banner, checkout.log()


def test_the_terminal_shows_no_request_and_the_banner_names_the_access_log(live):
    checkout, _ = live
    assert checkout.make("demo").returncode == 0  # requests to all three services
    access_log = checkout.path / ".local" / "access.log"
    log = checkout.log()
    assert "logs: access log .local/access.log;" in log.split(READY, 1)[1], log
    requests = [json.loads(line) for line in access_log.read_text().splitlines()]
    assert {"user_service", "activity_service", "order_service"} <= {r["service"] for r in requests}
    assert any(r["msg"].startswith("POST /activities/") for r in requests), requests[-5:]
    # The terminal has no line per request, and no JSON at all: only lines a person reads.
    assert "/activities/" not in log and "seckill.access" not in log, log[-2000:]
    assert not [line for line in log.splitlines() if line.startswith("{")], log[-2000:]


def test_the_openapi_example_of_a_new_activity_is_open_now(live):
    checkout, _ = live
    port = checkout.ports["activity_service"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/docs/openapi.json", timeout=5) as r:
        fields = json.load(r)["components"]["schemas"]["ActivityCreate"]["properties"]
    starts = datetime.fromisoformat(fields["starts_at"]["examples"][0])
    ends = datetime.fromisoformat(fields["ends_at"]["examples"][0])
    assert starts <= datetime.now(UTC) < ends


def test_make_demo_walks_through_a_first_seckill(live):
    checkout, _ = live
    result = checkout.make("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    steps = [line.split()[:2] for line in result.stdout.splitlines() if line[:3].isdigit()]
    assert steps == [
        ["201", "POST"],  # register
        ["200", "POST"],  # log in
        ["200", "POST"],  # the admin logs in
        ["201", "POST"],  # an activity open from now
        ["201", "POST"],  # buy
        ["200", "POST"],  # buy again: the same order
        ["200", "GET"],  # the orders
    ], result.stdout
    assert '"total": 1' in result.stdout
    assert "the shop at http://127.0.0.1:" in result.stdout and "/shop" in result.stdout


def readme_walkthrough(ports: dict[str, int]) -> str:
    """The README's curl lines of the first seckill, on the checkout's ports."""
    readme = (ROOT / "README.md").read_text()
    script = readme.split("## The first seckill", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    for name, default in (
        ("user_service", 8001),
        ("activity_service", 8002),
        ("order_service", 8003),
    ):
        script = script.replace(f"localhost:{default}/", f"localhost:{ports[name]}/")
    return script


def test_the_readme_walkthrough_buys_from_the_activity_it_creates(live):
    checkout, _ = live
    assert checkout.make("demo").returncode == 0  # the demo's sales come first, as for a reader
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", readme_walkthrough(checkout.ports)],
        cwd=checkout.path,
        env=checkout.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    with mysql_connect(f"{checkout.prefix}_activity") as conn, conn.cursor() as cur:
        cur.execute("SELECT MAX(id) AS id FROM activities WHERE name = 'Launch'")
        created = cur.fetchone()["id"]
    answers = [json.loads(line) for line in lines if line.startswith("{")]
    bought = [answer for answer in answers if "order_no" in answer]
    assert len(bought) == 2 and bought[0] == bought[1], answers
    assert bought[0]["activity_id"] == created, (created, bought[0])
    assert f"activity {created}" in lines, result.stdout
    # register; buy; buy again (the same order); the orders
    assert [line for line in lines if re.fullmatch(r"\d{3}", line)] == ["201", "201", "200", "200"]


def test_make_stop_from_another_process_ends_a_clean_run(live):
    checkout, run = live
    booted = len(checkout.log())
    result = checkout.make("stop")
    assert result.returncode == 0, result.stdout + result.stderr
    assert run.wait(timeout=30) == 0
    log = checkout.log()
    shutdown = log[booted:]
    assert processes_from(checkout.path) == []
    assert " warning: " not in shutdown and " error: " not in shutdown, shutdown
    assert "was cancelled" not in log and "Traceback" not in log
    access = (checkout.path / ".local" / "access.log").read_text()
    assert '"status":500' not in access, [line for line in access.splitlines() if "500" in line]
    assert "make: ***" not in log
    assert "schema version 0" not in log  # a fresh create says what it did
    assert not (checkout.path / ".local" / "run.pid").exists()


def test_make_demo_says_so_when_make_run_is_not_up(checkout):
    result = checkout.make("demo")
    assert result.returncode != 0
    assert "does not answer" in result.stderr and "make run" in result.stderr


@pytest.mark.parametrize(
    ("sig", "group"),
    [
        (signal.SIGINT, False),  # `kill -INT <make's pid>`
        (signal.SIGTERM, False),
        (signal.SIGINT, True),  # Ctrl-C in a terminal: make and its recipe both get it
    ],
)
def test_a_signal_to_make_itself_stops_every_service(checkout, sig, group):
    run = checkout.start()
    checkout.wait_for(run, READY)
    if group:
        os.killpg(run.pid, sig)
    else:
        run.send_signal(sig)
    try:
        run.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"make run ignored {sig.name}:\n{checkout.log()[-2000:]}")
    assert processes_from(checkout.path) == []
    log = checkout.log()
    assert "Shutdown interrupted" not in log and "make: ***" not in log, log[-2000:]


def test_make_reset_drops_this_prefix_after_a_confirmation_or_with_force(checkout):
    checkout.python("-m", "devtools.local", "migrate")

    def databases() -> set[str]:
        with mysql_connect() as conn, conn.cursor() as cur:
            cur.execute("SHOW DATABASES LIKE %s", (checkout.prefix + "%",))
            return {next(iter(row.values())) for row in cur.fetchall()}

    assert len(databases()) == 3
    unconfirmed = checkout.make("reset")
    assert unconfirmed.returncode != 0 and "FORCE=1" in unconfirmed.stdout
    assert len(databases()) == 3
    code, shown = at_a_terminal(checkout, "reset", typed="n\n")
    assert code == 0 and "make reset: nothing dropped" in shown, shown
    assert "make: ***" not in shown, shown
    assert len(databases()) == 3
    forced = checkout.make("reset", "FORCE=1")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert databases() == set()


def service_alone(command: str, **env: str) -> subprocess.CompletedProcess:
    """`python -m order_service <command>` as the container's entrypoint runs it."""
    return subprocess.run(
        [sys.executable, "-m", "order_service", command],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "SERVICE_TOKEN": "unused", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_service_started_alone_on_a_port_in_use_says_which_in_one_line():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = service_alone("serve", SERVICE_HOST="127.0.0.1", ORDER_SERVICE_PORT=str(port))
    assert result.returncode != 0
    assert f"order_service: port {port} (order_service) is already in use" in result.stderr
    assert "ORDER_SERVICE_PORT" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_a_service_started_alone_without_mysql_says_where_it_looked(command):
    port = free_port()
    result = service_alone(
        command, MYSQL_HOST="127.0.0.1", MYSQL_PORT=str(port), ORDER_SERVICE_PORT=str(free_port())
    )
    assert result.returncode != 0
    assert f"cannot reach MySQL at 127.0.0.1:{port}: is it running?" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_the_services_stop_even_when_make_run_itself_is_killed(checkout):
    run = checkout.start()
    # The banner comes once every worker is up (activity_service runs two): a Sanic main
    # process sent SIGTERM while a worker is still starting spins and never exits
    # (sanic-org/sanic#2997); make run's own stop kills it after a while, but here make run
    # is gone.
    checkout.wait_for(run, READY)
    os.kill(int((checkout.path / ".local" / "run.pid").read_text()), signal.SIGKILL)
    run.wait(timeout=30)
    try:
        wait_until(lambda: processes_from(checkout.path) == [], 30, "no process left")
    except TimeoutError:
        left = processes_from(checkout.path)
        assert left == [], "\n".join(left) + "\n" + checkout.log()[-3000:]
