"""docs/metrics.md lists every metric family the services declare."""

import importlib
import importlib.util
import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from deploy.services import SERVICES

ROOT = Path(__file__).resolve().parents[2]


def declared_families() -> dict[str, str]:
    """{family name: module} of every metric family in common/ and each service's metrics."""
    modules = ["common.telemetry.metrics"]
    modules += [f"{s}.metrics" for s in SERVICES if importlib.util.find_spec(f"{s}.metrics")]
    families = {}
    for name in modules:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                (family,) = value.describe()
                families[family.name] = name
    return families


def test_every_declared_family_is_in_the_metrics_doc():
    documented = set(re.findall(r"`([a-z_]+)`", (ROOT / "docs" / "metrics.md").read_text()))
    families = declared_families()
    assert len(families) >= 20
    missing = {
        family: module
        for family, module in families.items()
        if family not in documented and f"{family}_total" not in documented
    }
    assert missing == {}, f"not in docs/metrics.md's table: {missing}"
