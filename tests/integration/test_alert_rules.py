"""The alert rules compose's Prometheus loads (deploy/prometheus/alerts.yml): promtool finds
them valid, compose's config loads them and passes `promtool check config`, each alert has
cases that show it firing and quiet (alerts_test.yml, run by `promtool test rules`), and
docs/metrics.md says what each means and what to do."""

from pathlib import Path

import yaml

from common.config import SERVICE_PORTS
from tests.support.prometheus import ALERTS, ROOT, promtool, static_config, write_config

CASES = Path(__file__).with_name("alerts_test.yml")
DOCS = ROOT / "docs" / "metrics.md"


def alert_names() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


def test_the_rules_are_valid():
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_fires_past_its_threshold_and_stays_quiet_below():
    cases = yaml.safe_load(CASES.read_text())
    firing, quiet = set(), set()
    for test in cases["tests"]:
        for case in test["alert_rule_test"]:
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    names = set(alert_names())
    assert firing == names and quiet == names, (names - firing, names - quiet)
    run = promtool("test", "rules", CASES.name, cwd=CASES.parent)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_docs_say_what_each_alert_means():
    docs = DOCS.read_text()
    for name in alert_names():
        assert f"\n### {name}\n" in docs, f"docs/metrics.md has no section for {name}"


def test_compose_loads_the_rules_and_its_config_passes_promtool(tmp_path):
    """promtool check config of compose's prometheus.yml with only its Consul discovery
    swapped for static targets (Debian's promtool has no Consul discovery)."""
    config = static_config({job: 9 for job in SERVICE_PORTS})
    assert config["rule_files"] == [ALERTS.name]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["prometheus"]["volumes"]
    assert f"./deploy/prometheus/{ALERTS.name}:/etc/prometheus/{ALERTS.name}:ro" in mounts
    checked = promtool("check", "config", str(write_config(tmp_path, config)))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout + checked.stderr
