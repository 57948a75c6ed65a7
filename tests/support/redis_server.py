"""Redis servers of a test's own on free ports, that the test may stop, start again or kill:
one Redis (RedisServer), a Redis Cluster of 3 primaries and 3 replicas (ClusterServers), one
primary with a replica under three Sentinels (SentinelServers)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time

import redis

from testkit.poll import wait_until
from testkit.stack import free_port

SHARED_REDIS = "redis://127.0.0.1:6379/0"  # the machine's; tests keep to their own key prefix
CLUSTER_BUS_OFFSET = 10000  # a cluster node also listens on its port + 10000


def sync_client(url: str) -> redis.Redis | redis.RedisCluster:
    """A plain client for the test's own reads and clean-ups, cluster or not."""
    with redis.Redis.from_url(url) as probe:
        cluster = probe.info("cluster").get("cluster_enabled")
    return (redis.RedisCluster if cluster else redis.Redis).from_url(url)


def url_for(request, kind: str) -> str:
    """REDIS_URL for a kind of Redis a test is parametrised with: "one" (the machine's),
    "cluster" (the session's redis_cluster fixture, started when first asked for), "none"."""
    if kind == "cluster":
        return request.getfixturevalue("redis_cluster").url
    return {"one": SHARED_REDIS, "none": ""}[kind]


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


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
        return answers(self.port)


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + CLUSTER_BUS_OFFSET > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + CLUSTER_BUS_OFFSET))
            except OSError:
                continue
        return port


def redis_cli(port: int, *args: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10
    ).stdout


class Servers:
    """Redis processes of a test's own, each in a directory of its own, that a test may kill."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="sktest_redis_")
        self.procs: dict[int, subprocess.Popen] = {}

    def spawn(self, port: int, *options: str, program: str = "redis-server") -> None:
        here = os.path.join(self.dir, str(port))
        os.makedirs(here, exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [program, *options]
            if program == "redis-sentinel"
            else [
                program,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                here,
                *options,
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=here,
        )

    def kill(self, port: int) -> None:
        """SIGKILL: as a machine that dies, nothing said to the others."""
        proc = self.procs[port]
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        for port in list(self.procs):
            self.kill(port)
        shutil.rmtree(self.dir, ignore_errors=True)


class ClusterServers(Servers):
    """A Redis Cluster of 3 primaries and 3 replicas on free loopback ports; url names one
    node, as REDIS_URL would."""

    NODE_TIMEOUT_MS = 1000  # how long a silent primary takes to be failed over (and some)

    def __init__(self) -> None:
        super().__init__()
        self.ports = [free_cluster_port() for _ in range(6)]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        for port in self.ports:
            self.spawn(
                port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.NODE_TIMEOUT_MS),
            )  # fmt: skip
        for port in self.ports:
            wait_until(lambda port=port: answers(port), 10, f"redis-server on port {port}")
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "1"]
            + ["--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        wait_until(self.ready, 30, "the Redis Cluster to agree on its slots")

    def ready(self) -> bool:
        live = [p for p in self.ports if self.procs[p].poll() is None]
        return all("cluster_state:ok" in redis_cli(p, "CLUSTER", "INFO") for p in live)

    def primary_of(self, key: str) -> int:
        """The port of the primary that serves key now."""
        live = next(p for p in self.ports if self.procs[p].poll() is None)
        slot = int(redis_cli(live, "CLUSTER", "KEYSLOT", key))
        for line in redis_cli(live, "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for part in fields[8:]:
                first, _, last = part.partition("-")
                if part[0] != "[" and int(first) <= slot <= int(last or first):
                    return int(fields[1].split(":")[1].split("@")[0])
        raise LookupError(f"no live primary serves slot {slot}")


class SentinelServers(Servers):
    """One primary, one replica and three Sentinels watching them (name MASTER); url names
    one Sentinel, as REDIS_URL would."""

    MASTER = "seckill"
    DOWN_AFTER_MS = 1000

    def __init__(self) -> None:
        super().__init__()
        self.primary, self.replica = free_port(), free_port()
        self.sentinels = [free_port() for _ in range(3)]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.sentinels[0]}/0"

    def start(self) -> None:
        self.spawn(self.primary)
        self.spawn(self.replica, "--replicaof", "127.0.0.1", str(self.primary))
        for port in self.sentinels:
            conf = os.path.join(self.dir, f"sentinel-{port}.conf")
            with open(conf, "w") as out:
                out.write(
                    f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                    f"sentinel monitor {self.MASTER} 127.0.0.1 {self.primary} 2\n"
                    f"sentinel down-after-milliseconds {self.MASTER} {self.DOWN_AFTER_MS}\n"
                    f"sentinel failover-timeout {self.MASTER} 3000\n"
                )
            self.spawn(port, conf, program="redis-sentinel")
        wait_until(self.ready, 30, "the Sentinels to see the primary, its replica and each other")

    def ready(self) -> bool:
        for port in self.sentinels:
            info = redis_cli(port, "INFO", "sentinel")
            if "slaves=1,sentinels=3" not in info:
                return False
        return True

    def primary_now(self) -> int:
        reply = redis_cli(self.sentinels[-1], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER)
        return int(reply.split()[1])
