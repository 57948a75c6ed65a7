"""A Redis server of a test's own, on a free port, that the test may stop and start again."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time

from testkit.poll import wait_until
from testkit.stack import free_port

SHARED_REDIS = "redis://127.0.0.1:6379/0"  # the machine's; tests keep to their own key prefix


async def well_inside_a_window(period: float, margin: float) -> None:
    """Wait, if less than margin seconds are left, for the next of the clock-aligned windows
    that limits shared through Redis count in (common/limits/shared_counts.py): requests that cross
    a window's end meet two windows' allowances."""
    left = period - time.time() % period
    if left < margin:
        await asyncio.sleep(left + 0.05)


class RedisServer:
    def __init__(self, password: str | None = None):
        self.port = free_port()
        self.password = password
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        auth = ["--requirepass", self.password] if self.password else []
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *auth],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, 10, f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False
