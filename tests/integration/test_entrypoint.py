"""The container entrypoint, run here as the image runs it: wait for MySQL, migrate, serve."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from testkit.poll import wait_until
from testkit.stack import ROOT, free_port, mysql_connect

ENTRYPOINT = [sys.executable, "-m", "deploy.entrypoint"]


class MySQLForwarder(socketserver.ThreadingTCPServer):
    """A TCP port that starts forwarding to the real MySQL only when the test opens it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int):
        super().__init__(("127.0.0.1", port), _Pipe)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Pipe(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        upstream = socket.create_connection(
            (os.environ.get("MYSQL_HOST", "127.0.0.1"), int(os.environ.get("MYSQL_PORT", "3306")))
        )

        def pump(source: socket.socket, sink: socket.socket) -> None:
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
            except OSError:
                pass
            finally:
                for s in (source, sink):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
        back.start()
        pump(self.request, upstream)
        back.join()
        upstream.close()


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


def user_service_env(tmp_path: Path, mysql_port: int, port: int, prefix: str) -> dict[str, str]:
    subprocess.run([*ENTRYPOINT, "init-secrets", str(tmp_path / "secrets")], check=True, cwd=ROOT)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SERVICE": "user_service",
        "SERVICE_HOST": "127.0.0.1",
        "USER_SERVICE_PORT": str(port),
        "MYSQL_PORT": str(mysql_port),
        "SECKILL_DB_PREFIX": prefix,
        "TOKEN_PRIVATE_KEY_FILE": str(tmp_path / "secrets" / "token_key.pem"),
        "SERVICE_TOKEN_FILE": str(tmp_path / "secrets" / "service_token"),
        "PASSWORD_HASH_COST": "10",
        "LOG_LEVEL": "WARNING",
    }
    for key in ("CONSUL_HOST", "OTEL_EXPORTER_OTLP_ENDPOINT", "TOKEN_PRIVATE_KEY", "SERVICE_TOKEN"):
        env.pop(key, None)
    return env


@pytest.fixture
def prefix():
    prefix = "sktest_" + secrets.token_hex(4)
    yield prefix
    with mysql_connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{prefix}_user`")


def test_waits_for_mysql_then_migrates_and_serves(tmp_path, prefix):
    mysql_port, port = free_port(), free_port()
    env = user_service_env(tmp_path, mysql_port, port, prefix)
    log = tmp_path / "entrypoint.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*ENTRYPOINT, "serve"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    forwarder = None
    try:
        wait_until(lambda: "waiting for MySQL" in log.read_text(), 60, "the entrypoint to wait")
        time.sleep(1.5)
        assert proc.poll() is None, log.read_text()
        assert not healthy(port)

        forwarder = MySQLForwarder(mysql_port)
        wait_until(lambda: healthy(port) or proc.poll() is not None, 90, "/health")
        assert healthy(port), log.read_text()

        text = log.read_text()
        assert f"MySQL at root@127.0.0.1:{mysql_port} is up" in text
        assert "user_service database is up to date" in text
        with mysql_connect(f"{prefix}_user") as conn, conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            assert {"users", "schema_version"} <= {next(iter(r.values())) for r in cur.fetchall()}
        # exec, not a child: the container's PID 1 is the service and gets docker stop's SIGTERM.
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:4] == [b"-m", b"user_service", b"serve"]

        health = subprocess.run([*ENTRYPOINT, "health"], env=env, cwd=ROOT)
        assert health.returncode == 0

        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        health = subprocess.run([*ENTRYPOINT, "health"], env=env, cwd=ROOT)
        assert health.returncode == 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if forwarder:
            forwarder.close()


def test_migrate_runs_twice_and_leaves_the_schema_in_place(tmp_path, prefix):
    env = user_service_env(tmp_path, int(os.environ.get("MYSQL_PORT", "3306")), 1, prefix)
    for _ in range(2):
        result = subprocess.run(
            [*ENTRYPOINT, "migrate"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert "user_service database is up to date" in result.stderr
    with mysql_connect(f"{prefix}_user") as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        assert {"users", "schema_version"} <= {next(iter(r.values())) for r in cur.fetchall()}


def test_gives_up_with_a_clear_message_when_mysql_never_answers(tmp_path, prefix):
    env = user_service_env(tmp_path, free_port(), free_port(), prefix)
    env["MYSQL_WAIT_TIMEOUT"] = "2"
    result = subprocess.run(
        [*ENTRYPOINT, "serve"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "did not answer within 2s" in result.stderr


def test_refuses_an_unknown_service(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SERVICE": "cart_service"}
    result = subprocess.run(
        [*ENTRYPOINT, "serve"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode != 0 and "SERVICE must be one of" in result.stderr


def test_init_secrets_creates_them_once_and_never_overwrites(tmp_path):
    target = tmp_path / "secrets"
    subprocess.run([*ENTRYPOINT, "init-secrets", str(target)], check=True, cwd=ROOT)
    key, token = (target / "token_key.pem").read_bytes(), (target / "service_token").read_text()
    subprocess.run([*ENTRYPOINT, "init-secrets", str(target)], check=True, cwd=ROOT)
    assert (target / "token_key.pem").read_bytes() == key
    assert (target / "service_token").read_text() == token
    assert len(token) >= 32
    loaded = serialization.load_pem_private_key(key, password=None)
    assert isinstance(loaded, RSAPrivateKey) and loaded.key_size >= 2048
    for name in ("token_key.pem", "service_token"):
        assert (target / name).stat().st_mode & 0o077 == 0


def test_init_secrets_replaces_an_ed25519_key_of_an_earlier_version(tmp_path):
    target = tmp_path / "secrets"
    target.mkdir()
    old_key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (target / "token_key.pem").write_bytes(old_key)
    (target / "service_token").write_text("kept-as-it-is-" + "x" * 32)
    result = subprocess.run(
        [*ENTRYPOINT, "init-secrets", str(target)],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert "is not an RSA key" in result.stderr and "replacing it" in result.stderr
    key = (target / "token_key.pem").read_bytes()
    loaded = serialization.load_pem_private_key(key, password=None)
    assert isinstance(loaded, RSAPrivateKey) and loaded.key_size >= 2048
    assert (target / "token_key.pem").stat().st_mode & 0o077 == 0
    assert (target / "service_token").read_text() == "kept-as-it-is-" + "x" * 32
    subprocess.run([*ENTRYPOINT, "init-secrets", str(target)], check=True, cwd=ROOT)
    assert (target / "token_key.pem").read_bytes() == key
