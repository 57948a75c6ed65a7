"""Debian's Prometheus and promtool for the tests (`make test` installs the package): the
compose configuration with its Consul discovery swapped for the test stack's ports, a
server on loopback, and queries through its HTTP API."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from testkit.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "deploy" / "prometheus"
COMPOSE_CONFIG = CONFIG_DIR / "prometheus.yml"
ALERTS = CONFIG_DIR / "alerts.yml"
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"


def require(binary: str) -> str:
    # Never skip: a machine without it must fail here (`make test` installs it).
    if not Path(binary).exists():
        pytest.fail(f"{binary} is missing: apt-get install prometheus (as `make test` does)")
    return binary


def promtool(*args: str, stdin: str | None = None, cwd: Path | None = None):
    return subprocess.run(
        [require(PROMTOOL), *args], input=stdin, capture_output=True, text=True, cwd=cwd
    )


def static_config(ports: dict[str, int], scrape_interval: str | None = None) -> dict[str, Any]:
    """compose's prometheus.yml with each job's Consul discovery replaced by static targets
    (Debian's build has no Consul discovery); nothing else changed but, when given, the
    scrape and evaluation interval."""
    config = yaml.safe_load(COMPOSE_CONFIG.read_text())
    for job in config["scrape_configs"]:
        del job["consul_sd_configs"]
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
    if scrape_interval is not None:
        config["global"]["scrape_interval"] = scrape_interval
        config["global"]["evaluation_interval"] = scrape_interval
    return config


def write_config(directory: Path, config: dict[str, Any]) -> Path:
    """The configuration and the files it names (the alert rules) in directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for rules in config.get("rule_files", []):
        shutil.copy(CONFIG_DIR / rules, directory / rules)
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextmanager
def running_prometheus(directory: Path, config: dict[str, Any]) -> Iterator[str]:
    """A Prometheus on loopback with config; yields its base URL."""
    path = write_config(directory, config)
    port = free_port()
    log = open(directory / "prometheus.log", "ab")
    process = subprocess.Popen(
        [
            require(PROMETHEUS),
            f"--config.file={path}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "Prometheus did not start: " + (directory / "prometheus.log").read_text()
                    ) from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


async def query(
    session: aiohttp.ClientSession, url: str, expr: str, at: float | None = None
) -> list[dict]:
    """An instant query through the HTTP API: the result vector (raises on an error)."""
    params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
    async with session.get(url + "/api/v1/query", params=params) as response:
        body = await response.json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


async def targets_up(session: aiohttp.ClientSession, url: str) -> dict[str, str]:
    """job -> health of each active target."""
    async with session.get(url + "/api/v1/targets") as response:
        body = await response.json()
    return {t["labels"]["job"]: t["health"] for t in body["data"]["activeTargets"]}
