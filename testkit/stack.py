"""Real service processes on loopback ports, each with a fresh set of databases.

A Stack is what `make run` starts, but on free ports and under a unique
database prefix, so the tests and `make bench` never touch a developer's data
and can run beside `make run`. Processes run in their own process groups so a test can SIGKILL
a whole service, workers included, as a crash would.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pymysql

from common.auth import new_private_key_pem
from common.config import Settings
from common.db import Database
from deploy.services import SERVICES, SETTINGS
from testkit.poll import wait_until

ROOT = Path(__file__).resolve().parent.parent
ADMIN = ("admin", "Vx7-tulip-orbit-52")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mysql_connect(database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(
        host=os.environ.get("MYSQL_HOST", "127.0.0.1"),
        port=int(os.environ.get("MYSQL_PORT", "3306")),
        user=os.environ.get("MYSQL_USER", "root"),
        password=os.environ.get("MYSQL_PASSWORD", ""),
        database=database,
        autocommit=True,
        cursorclass=pymysql.cursors.DictCursor,
    )


@asynccontextmanager
async def scratch_database(
    service: str, prepare: Callable[[Settings], None]
) -> AsyncIterator[Database]:
    """An open Database of service's settings under a fresh `sktest_` prefix, made by
    prepare(settings) and dropped afterwards: for tests against real MySQL in-process."""
    env = {**os.environ, "SECKILL_DB_PREFIX": "sktest_" + secrets.token_hex(4)}
    settings = SETTINGS[service].from_env(env | {"SERVICE_TOKEN": "unused"})
    prepare(settings)
    database = Database(settings)
    await database.connect()
    try:
        yield database
    finally:
        await database.close()
        with mysql_connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{settings.database}`")


def scratch_env(prefix: str, key_file: Path, service_token: str) -> dict[str, str]:
    """This process's environment for a test's services: their own database prefix, signing key,
    service token and admin, quiet logs, cheap hashes, and no Consul, tracing, Redis or rate
    limits (a test that wants them sets them)."""
    env = {
        **os.environ,
        "SECKILL_DB_PREFIX": prefix,
        "TOKEN_PRIVATE_KEY_FILE": str(key_file),
        "SERVICE_TOKEN": service_token,
        "ADMIN_USERNAME": ADMIN[0],
        "ADMIN_PASSWORD": ADMIN[1],
        "PASSWORD_HASH_COST": "10",
        # The suites register dozens of users at once; the pool's bound has its own tests.
        "PASSWORD_HASH_QUEUE": "1000",
        "ACCESS_LOG": "false",
        "LOG_LEVEL": "WARNING",
        # Most tests drive many users from one address; the limits' own tests turn them on.
        "RATE_LIMITS": "off",
        "REDIS_URL": "",
    }
    for key in ["CONSUL_HOST", *(k for k in env if k.startswith("OTEL_"))]:
        env.pop(key, None)
    return env


class LoopbackUrls:
    """The services' base URLs on loopback, from the ports in self.ports."""

    ports: dict[str, int]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def user_url(self) -> str:
        return self.url("user_service")

    @property
    def activity_url(self) -> str:
        return self.url("activity_service")

    @property
    def order_url(self) -> str:
        return self.url("order_service")


class Stack(LoopbackUrls):
    def __init__(self, tmp: Path, **overrides: str):
        self.tmp = tmp
        # How long a started service may take to answer /health (a busy machine needs longer).
        self.start_timeout = 30.0
        self.prefix = "sktest_" + secrets.token_hex(4)
        self.ports = {name: free_port() for name in SERVICES}
        key_file = tmp / "token_key.pem"
        key_file.write_bytes(new_private_key_pem())
        self.service_token = secrets.token_urlsafe(24)
        self.env = {
            **scratch_env(self.prefix, key_file, self.service_token),
            "PYTHONPATH": str(ROOT),
            **{f"{n.upper()}_PORT": str(p) for n, p in self.ports.items()},
            **{f"{n.upper()}_URL": f"http://127.0.0.1:{p}" for n, p in self.ports.items()},
            **overrides,
        }
        self.procs: dict[str, subprocess.Popen] = {}
        # instance name -> the service it runs; the three first instances are named as the service
        self.services: dict[str, str] = {name: name for name in SERVICES}

    def migrate(self) -> None:
        for name in SERVICES:
            subprocess.run(
                [sys.executable, "-m", name, "migrate"],
                env=self.env,
                cwd=ROOT,
                check=True,
                capture_output=True,
            )

    def add_instance(self, service: str, name: str, **env: str) -> str:
        """Start one more instance of service, on a port of its own, known as name."""
        self.services[name] = service
        self.ports[name] = free_port()
        self.start(name, **env)
        return name

    def start(self, *names: str, **env: str) -> None:
        for name in names or SERVICES:
            service = self.services[name]
            log = open(self.tmp / f"{name}.log", "ab")
            port = {
                f"{service.upper()}_PORT": str(self.ports[name]),
                # Each instance's own metric files, emptied at each start (docs/metrics.md).
                "PROMETHEUS_MULTIPROC_DIR": str(self.tmp / f"metrics-{name}"),
            }
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", service],
                env={**self.env, **port, **env},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for name in names or SERVICES:
            self.wait_healthy(name)

    def wait_healthy(self, name: str, timeout: float | None = None) -> None:
        timeout = timeout or self.start_timeout

        def healthy() -> bool:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")
            try:
                with urllib.request.urlopen(self.url(name) + "/health", timeout=1) as r:
                    return r.status == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        try:
            wait_until(healthy, timeout, f"{name} to answer /health")
        except TimeoutError:
            raise RuntimeError(f"{name} did not become healthy:\n{self.log(name)}") from None

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def kill(self, *names: str) -> None:
        """SIGKILL the whole process group: no shutdown code runs, as in a crash."""
        for name in names or list(self.procs):
            proc = self.procs.get(name)
            if proc and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop(self, *names: str, sig: signal.Signals = signal.SIGTERM) -> None:
        """A graceful stop: SIGTERM (or sig), then SIGKILL after 15 s."""
        for name in names or list(self.procs):
            proc = self.procs.get(name)
            if proc and proc.poll() is None:
                os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()

    def query(self, service: str, sql: str, args: tuple = ()) -> list[dict]:
        database = f"{self.prefix}_{service.removesuffix('_service')}"
        with mysql_connect(database) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def drop_databases(self) -> None:
        with mysql_connect() as conn, conn.cursor() as cur:
            for name in SERVICES:
                database = f"{self.prefix}_{name.removesuffix('_service')}"
                cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
