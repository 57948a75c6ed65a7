"""Prometheus and Grafana under compose: their files parse, Prometheus scrapes every service
through Consul, and every board query names a metric the services export."""

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import activity_service.app  # noqa: F401  (the metrics every service module defines)
import order_service.app  # noqa: F401
import user_service.app  # noqa: F401
from common.config import SERVICE_PORTS
from common.telemetry.metrics import METRICS_PATH

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
BOARD = GRAFANA / "dashboards" / "seckill.json"
# A metric in a query is written as a selector, name{...}: what this test reads.
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
}


def exported() -> set[str]:
    """Every sample name the services' registry can expose."""
    names = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def board_queries() -> list[str]:
    board = json.loads(BOARD.read_text())
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def test_prometheus_scrapes_every_service_through_consul():
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(SERVICE_PORTS)
    for name, job in jobs.items():
        assert job["metrics_path"] == METRICS_PATH
        [consul] = job["consul_sd_configs"]
        assert consul["server"] == "consul:8500" and consul["services"] == [name]
        assert {"source_labels": ["__meta_consul_service_id"], "target_label": "instance"} in (
            job["relabel_configs"]
        )


def test_grafana_provisions_the_prometheus_source_and_the_board():
    [source] = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load((GRAFANA / "provisioning/dashboards/seckill.yml").read_text())[
        "providers"
    ]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    board = json.loads(BOARD.read_text())
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]


def test_every_board_query_names_metrics_the_services_export():
    names = exported()
    assert {"http_requests_total", "seckill_answers_total", "orders"} <= names
    used = set()
    for expr in board_queries():
        found = set(SELECTOR.findall(expr))
        assert found, f"no metric selector in {expr!r}"
        assert found <= names, f"{expr!r} names {sorted(found - names)}, not exported"
        used |= found
    # the board covers what the metrics page promises
    for metric in (
        "seckill_outbox_backlog",
        "orders",
        "user_logins_total",
        "db_pool_connections_in_use",
    ):
        assert metric in used
