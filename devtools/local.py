"""The local run: secrets once, checks, migrations, then the three services in the foreground.

python -m devtools.local run        # what `make run` does (with --make: see the Makefile)
python -m devtools.local stop       # stop a running `make run` of this checkout (`make stop`)
python -m devtools.local reset      # drop this prefix's databases, after a confirmation
python -m devtools.local migrate    # create databases and tables only
python -m devtools.local env        # print the environment the services get
python -m devtools.local load ARGS  # Locust against the local run, admin from the secrets
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import difflib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pymysql
from dotenv import dotenv_values

from common.auth import ensure_signing_key
from common.config import SERVICE_PORTS, Settings
from common.runner import mysql_problem, port_problem
from deploy.entrypoint import admin_problem
from deploy.services import SERVICES, SETTINGS
from devtools.output import Output, access_log_target
from testkit.poll import wait_until

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local"
STOP_TIMEOUT = 15.0
READY_TIMEOUT = 120.0
PR_SET_PDEATHSIG = 1
# The warnings of reading .env: printed at once, and repeated under the banner.
ENV_WARNINGS: list[str] = []


def fail(message: str) -> int:
    print(f"make run: {message}", file=sys.stderr, flush=True)
    return 1


# Served on loopback only, every client (`make load`'s shoppers too) is one address: there the
# per-address limits default to these unless .env or the environment sets them. The per-user
# limits and the login throttling keep their defaults; deployments (compose, Kubernetes, the
# image) get the real per-address defaults.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
LOOPBACK_LIMITS = {
    "LIMIT_SIGNUPS_PER_IP": "100000/hour",
    "LIMIT_LOGINS_PER_IP": "100000/minute",
    "LIMIT_SECKILL_PER_IP": "100000/minute",
    "LIMIT_CHALLENGES_PER_IP": "100000/minute",
    "LIMIT_REFRESHES_PER_IP": "100000/minute",
    "LIMIT_REVOCATIONS_PER_IP": "100000/minute",
}


def known_variables() -> set[str]:
    """The names .env_template documents: the only ones a .env is expected to set."""
    text = (ROOT / ".env_template").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.M))


def read_env_file(path: Path, check_names: bool = False) -> dict[str, str]:
    if not path.exists():
        return {}
    values = {key: value or "" for key, value in dotenv_values(path).items()}
    if check_names:
        known = known_variables()
        for key in sorted(values):
            if key in known or key.startswith("OTEL_"):
                continue
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else " (see .env_template)"
            warning = f"warning: {path.name} sets {key}, which nothing reads{hint}"
            print(warning, file=sys.stderr)
            ENV_WARNINGS.append(warning)
    return values


def ensure_local_secrets() -> dict[str, str]:
    """Generate the signing key, service credential and dev admin once, into .local/ (ignored)."""
    LOCAL.mkdir(exist_ok=True)
    key_file = LOCAL / "token_key.pem"
    done = ensure_signing_key(key_file)
    if done:
        print(done, file=sys.stderr)
    env_file = LOCAL / "secrets.env"
    values = read_env_file(env_file)
    if not values:
        values = {
            "TOKEN_PRIVATE_KEY_FILE": str(key_file),
            "SERVICE_TOKEN": secrets.token_urlsafe(32),
            "ADMIN_USERNAME": "admin",
            "ADMIN_PASSWORD": secrets.token_urlsafe(18),  # 24 random characters: policy-proof
        }
        env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        env_file.chmod(0o600)
    return values


def service_env(check_names: bool = False) -> dict[str, str]:
    """Defaults < generated local secrets < .env < the caller's environment."""
    env = dict(ensure_local_secrets())
    for layer in (read_env_file(ROOT / ".env", check_names), os.environ):
        env.update({key: value for key, value in layer.items() if value})
    if env.get("SERVICE_HOST", "127.0.0.1") in LOOPBACK_HOSTS:
        for key, value in LOOPBACK_LIMITS.items():
            env.setdefault(key, value)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def env_for(service: str, env: dict[str, str]) -> dict[str, str]:
    """activity_service takes the seckill traffic: it runs ACTIVITY_SERVICE_WORKERS workers."""
    if service == "activity_service" and "SECKILL_WORKERS" not in env:
        return {**env, "SECKILL_WORKERS": env.get("ACTIVITY_SERVICE_WORKERS", "2")}
    return env


def base_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def preflight(env: dict[str, str]) -> tuple[dict[str, Settings], list[str]]:
    """Each service's settings, and every problem that would stop a start (before any starts).

    A bad value stops here already: Settings raises ConfigError, one line naming it.
    """
    settings = {name: SETTINGS[name].from_env(env_for(name, env)) for name in SERVICES}
    problems = [p for s in settings.values() if (p := port_problem(s))]
    problems += [p for p in [mysql_problem(settings["user_service"])] if p]
    admin = settings["user_service"]
    if admin.admin_username and admin.admin_password:
        problems += [p for p in [admin_problem(admin)] if p]
    return settings, problems


def migrate(env: dict[str, str], output: Output | None = None) -> int:
    """Each service creates or upgrades its database; a failure has printed its one line.

    With output (make run), the migrations' lines go where the services' lines go."""
    for service in SERVICES:
        command = [sys.executable, "-m", service, "migrate"]
        if output is None:
            returncode = subprocess.run(command, env=env, cwd=ROOT).returncode
        else:
            with subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            ) as child:
                for line in child.stdout:
                    output.line(service, line.decode("utf-8", "replace"))
            returncode = child.returncode
        if returncode != 0:
            return returncode
    return 0


def running_pid() -> int | None:
    """The pid of this checkout's `make run`, if one is running."""
    try:
        pid = int((LOCAL / "run.pid").read_text())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        if Path("/proc/self").exists():
            return None
        try:  # no /proc (macOS): a live pid has to do
            os.kill(pid, 0)
        except OSError:
            return None
        return pid
    return pid if b"devtools.local" in cmdline else None


def parent_stopping(parent: int) -> bool:
    """True once the process that started us is gone, or is `make` handling SIGINT or SIGTERM.

    GNU make passes SIGTERM on to its recipe, but on SIGINT it only waits for the recipe to
    end, from inside its signal handler: there the signal shows as blocked in make's status.
    Without this a `kill -INT` to make would stop nothing.
    """
    if os.getppid() != parent:
        return True
    try:
        if Path(f"/proc/{parent}/comm").read_text().strip() != "make":
            return False
        status = Path(f"/proc/{parent}/status").read_text()
    except OSError:
        return False
    blocked = int(re.search(r"^SigBlk:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    return any(blocked & (1 << (sig - 1)) for sig in (signal.SIGINT, signal.SIGTERM))


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=1) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def banner(settings: dict[str, Settings], env: dict[str, str], output: Output) -> str:
    lines = ["", "  seckill is ready:"]
    for name, s in settings.items():
        lines.append(f"    {name:<17} {base_url(s):<24}  Swagger UI {base_url(s)}/docs")
    generated = read_env_file(LOCAL / "secrets.env")
    admin = env.get("ADMIN_USERNAME", "")
    if admin and env.get("ADMIN_PASSWORD") == generated.get("ADMIN_PASSWORD"):
        password = f"{env['ADMIN_PASSWORD']}  (from {LOCAL.relative_to(ROOT)}/secrets.env)"
        lines.append(f"  admin login: {admin} / {password}")
    elif admin:
        lines.append(f"  admin login: {admin} / the ADMIN_PASSWORD you set")
    lines.append(output.where(ROOT))
    shop = f"{base_url(settings['activity_service'])}/shop"
    lines.append(f"  try a sale in the shop: {shop}  (or `make demo`)")
    lines.append("  stop: Ctrl-C here, or `make stop` from another shell.")
    return "\n".join([*lines, ""])


def stop_with_us() -> None:
    """Run in each service before exec: SIGTERM once make run has gone, even by SIGKILL (Linux)."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def stop_services(children: dict[str, subprocess.Popen]) -> None:
    """SIGTERM each service, then end whatever is left of its process group.

    Each service runs in its own process group, so its workers and helpers
    (Sanic's worker processes, multiprocessing's resource_tracker) go with it.
    """
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for name, child in children.items():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop within {STOP_TIMEOUT:g}s; killing it", file=sys.stderr)
            child.kill()
            child.wait()
    for child in children.values():
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def end_groups(groups: list[int], grace: float) -> None:
    """SIGTERM every process of these process groups, and SIGKILL what is left after grace s."""
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGTERM)

    def gone() -> bool:
        for group in groups:
            try:
                os.killpg(group, 0)
                return False
            except (ProcessLookupError, PermissionError):
                continue
        return True

    with contextlib.suppress(TimeoutError):
        wait_until(gone, grace, "the services' processes to end", interval=0.1)
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)


def reap(parent: int, groups: list[int]) -> int:
    """`python -m devtools.local reap PARENT PGID...`, started by make run once the services
    are: when make run ends, even by SIGKILL (PR_SET_PDEATHSIG), it ends what is left of the
    services' process groups. A Sanic main process that gets SIGTERM while a worker is still
    starting never exits (sanic-org/sanic#2997), so SIGTERM alone is not enough."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches make run, which stops us
    signal.signal(signal.SIGTERM, lambda *_: None)  # wakes pause() below
    if os.getppid() == parent:  # else make run was gone before the death signal was set
        signal.pause()
    end_groups(groups, STOP_TIMEOUT)
    return 0


def start_reaper(children: dict[str, subprocess.Popen]) -> subprocess.Popen:
    groups = [str(child.pid) for child in children.values()]
    return subprocess.Popen(
        [sys.executable, "-m", "devtools.local", "reap", str(os.getpid()), *groups],
        cwd=ROOT,
        preexec_fn=stop_with_us,
    )


def run(env: dict[str, str]) -> int:
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    parent = os.getppid()
    other = running_pid()
    if other:
        return fail(f"already running here (pid {other}); `make stop` stops it")
    (LOCAL / "run.pid").write_text(str(os.getpid()))  # `make stop` works from here on
    access_log = access_log_target(env.get("ACCESS_LOG"), LOCAL / "access.log")
    env = {**env, "ACCESS_LOG": "false" if access_log is None else "true"}
    output = Output(LOCAL / "services.log", access_log)
    output.early_warnings.extend(ENV_WARNINGS)
    children: dict[str, subprocess.Popen] = {}
    reaper: subprocess.Popen | None = None
    try:
        settings, problems = preflight(env)
        for problem in problems:
            fail(problem)
        if problems:
            return 1
        code = migrate(env, output)
        if code or stopping:
            return code
        for name in SERVICES:
            children[name] = subprocess.Popen(
                [sys.executable, "-m", name],
                env=env_for(name, env),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals reach it from here only, never twice
                preexec_fn=stop_with_us,
            )
            output.follow(name, children[name].stdout)
        reaper = start_reaper(children)
        return supervise(children, settings, env, parent, lambda: stopping, output)
    finally:
        stop_services(children)
        if reaper is not None:
            reaper.terminate()
            reaper.wait()
        output.close()
        if running_pid() == os.getpid():
            (LOCAL / "run.pid").unlink()


def supervise(
    children: dict[str, subprocess.Popen],
    settings: dict[str, Settings],
    env: dict[str, str],
    parent: int,
    stopping: Callable[[], bool],
    output: Output,
) -> int:
    """Until a stop is asked for or a service exits; prints the banner once every worker of
    every service is ready and each service answers /health."""
    waiting = {name: base_url(s) for name, s in settings.items()}
    started = time.monotonic()
    while not (stopping() or parent_stopping(parent)):
        for name, child in children.items():
            if child.poll() is not None:
                output.say(f"make run: {name} exited with {child.returncode}; stopping the others")
                return child.returncode
        if waiting:
            waiting = {
                name: url
                for name, url in waiting.items()
                if output.ready[name] < settings[name].workers or not healthy(url)
            }
            if not waiting:
                output.banner(banner(settings, env, output))
            elif time.monotonic() - started > READY_TIMEOUT:
                return fail(
                    f"{', '.join(waiting)} not ready within {READY_TIMEOUT:g}s "
                    "(every worker started, /health answered)"
                )
        time.sleep(0.2)
    return 0


def stop_run() -> int:
    """`make stop`: SIGTERM this checkout's `make run` and wait until it has ended."""
    pid = running_pid()
    if pid is None:
        print("make stop: make run is not running in this checkout")
        return 0
    print(f"make stop: stopping make run (pid {pid})", flush=True)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT + 5
    while running_pid() == pid:
        if time.monotonic() > deadline:
            print(f"make stop: pid {pid} is still running", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print("make stop: stopped")
    return 0


def reset(env: dict[str, str], force: bool) -> int:
    """`make reset`: drop this prefix's three databases (the next `make run` recreates them)."""
    if running_pid():
        print("make reset: make run is running; `make stop` first", file=sys.stderr)
        return 1
    settings = SETTINGS["user_service"].from_env(env)
    names = [SETTINGS[s].from_env(env).database for s in SERVICES]
    where = f"{settings.mysql_host}:{settings.mysql_port}"
    try:
        conn = pymysql.connect(
            host=settings.mysql_host,
            port=settings.mysql_port,
            user=settings.mysql_user,
            password=settings.mysql_password,
            connect_timeout=5,
        )
    except pymysql.err.MySQLError:
        print(f"make reset: {mysql_problem(settings)}", file=sys.stderr)
        return 1
    with conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES")
        existing = [name for (name,) in cur.fetchall() if name in names]
        if not existing:
            print(f"make reset: no {settings.db_prefix}_* databases at {where}; nothing to drop")
            return 0
        if not force:
            if not sys.stdin.isatty():
                print("make reset: needs a confirmation; `make reset FORCE=1` skips it")
                return 1
            answer = input(f"drop {', '.join(existing)} at {where}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("make reset: nothing dropped")
                return 0  # an answer, not a failure
        for name in existing:
            # Identifiers cannot be parameters; the prefix is validated in config.
            cur.execute(f"DROP DATABASE `{name}`")
            print(f"make reset: dropped {name}")
    return 0


def load(env: dict[str, str], args: list[str]) -> None:
    """Replace this process with Locust, given the admin account the services were started with."""
    locustfile = str(ROOT / "bench" / "locust" / "locustfile.py")
    urls = {
        name: env.get(f"{name.upper()}_URL")
        or f"http://127.0.0.1:{env.get(f'{name.upper()}_PORT', port)}"
        for name, port in SERVICE_PORTS.items()
    }
    env.setdefault("LOCUST_USER_URL", urls["user_service"])
    env.setdefault("LOCUST_ORDER_URL", urls["order_service"])
    argv = [sys.executable, "-m", "locust", "-f", locustfile, "--host", urls["activity_service"]]
    argv += args
    os.execve(sys.executable, argv, env)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.local")
    parser.add_argument(
        "command", choices=["run", "stop", "reset", "migrate", "env", "load", "reap"]
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help="for load: locust's options")
    args = parser.parse_args()
    if args.command == "stop":
        sys.exit(stop_run())
    if args.command == "reap":
        parent, *groups = (int(arg) for arg in args.args)
        sys.exit(reap(parent, groups))
    env = service_env(check_names=args.command == "run")
    if args.command == "load":
        load(env, args.args)
    elif args.command == "migrate":
        sys.exit(migrate(env))
    elif args.command == "reset":
        sys.exit(reset(env, force=os.environ.get("FORCE", "") not in ("", "0")))
    elif args.command == "env":
        for key in sorted(read_env_file(LOCAL / "secrets.env")):
            print(f"{key}={env[key]}")
    else:
        code = run(env)
        if code and args.args == ["--make"] and sys.stderr.isatty():
            # `make run` at a terminal: the failure has said so in its line, and make would
            # follow it with a `make: *** [...] Error 1` of its own (see the Makefile).
            code = 0
        sys.exit(code)


if __name__ == "__main__":
    main()
