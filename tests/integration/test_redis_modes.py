"""What REDIS_URL names is asked of the server (one Redis, a Redis Cluster's node, a Redis
Sentinel), and a Redis that answers in a way the services cannot use stops the start-up with
one line naming the fix, before any worker starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common.redis import RedisModeError, find_mode
from testkit.poll import wait_until
from testkit.stack import ROOT, free_port
from tests.support.redis_server import SHARED_REDIS, Servers, answers


def serve(**env: str) -> subprocess.CompletedProcess:
    """`python -m order_service serve` as the container's entrypoint runs it."""
    return subprocess.run(
        [sys.executable, "-m", "order_service", "serve"],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SERVICE_TOKEN": "unused",
            "ORDER_SERVICE_PORT": str(free_port()),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def replica():
    """A Redis and a read-only replica of it: the replica's URL."""
    servers = Servers()
    primary, copy = free_port(), free_port()
    servers.spawn(primary)
    servers.spawn(copy, "--replicaof", "127.0.0.1", str(primary))
    try:
        for port in (primary, copy):
            wait_until(lambda port=port: answers(port), 10, f"redis-server on port {port}")
        yield f"redis://127.0.0.1:{copy}/0"
    finally:
        servers.stop()


async def test_the_services_find_out_what_redis_url_names(redis_cluster):
    assert (await find_mode(SHARED_REDIS, None, "auto", None)).mode == "single"
    for port in redis_cluster.ports:  # any node, a replica's included
        found = await find_mode(f"redis://127.0.0.1:{port}/0", None, "auto", None)
        assert found.mode == "cluster", port
    nothing = f"redis://127.0.0.1:{free_port()}/0"
    assert await find_mode(nothing, None, "auto", None) is None  # started all the same


async def test_a_mode_set_that_the_server_contradicts_is_refused(redis_cluster):
    with pytest.raises(RedisModeError, match="REDIS_MODE is single but"):
        await find_mode(redis_cluster.url, None, "single", None)
    with pytest.raises(RedisModeError, match="REDIS_MODE is cluster but"):
        await find_mode(SHARED_REDIS, None, "cluster", None)


@pytest.mark.parametrize("case", ["cluster_database", "mode_contradicted", "read_only_replica"])
def test_a_redis_the_services_cannot_use_stops_the_start_up_in_one_line(
    case, redis_cluster, replica
):
    node = redis_cluster.ports[0]
    env, fix = {
        "cluster_database": (
            {"REDIS_URL": f"redis://127.0.0.1:{node}/3"},
            f"REDIS_URL (127.0.0.1:{node}) names database 3 of a Redis Cluster, which has"
            " only database 0: end REDIS_URL with /0",
        ),
        "mode_contradicted": (
            {"REDIS_URL": redis_cluster.url, "REDIS_MODE": "single"},
            f"REDIS_MODE is single but REDIS_URL (127.0.0.1:{node}) names a cluster Redis:"
            " set REDIS_MODE=auto (or cluster)",
        ),
        "read_only_replica": (
            {"REDIS_URL": replica},
            "names a read-only replica: point it at the primary",
        ),
    }[case]
    result = serve(**env)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("order_service: "), result.stderr
    assert fix in lines[0], lines[0]
