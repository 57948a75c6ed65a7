"""GET /metrics of a test stack's service, parsed by prometheus-client's own parser."""

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.factories import Api


async def scrape(api: Api, service: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, parsed by prometheus-client's own parser."""
    async with api.session.get(api.stack.url(service) + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def by_label(samples: dict, name: str, label: str) -> dict[str, float]:
    return {
        dict(key)[label]: v for (sample, key), v in samples.items() if sample == name and v != 0
    }


DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
OPTIONAL: set[str] = set()  # families of services with REDIS_URL only
SERVICE_COLUMN = {"activity": "activity_service", "order": "order_service", "user": "user_service"}


def documented_families() -> dict[str, set[str]]:
    """service -> the families docs/metrics.md's table lists for it (its last column: `all`
    or the services' short names)."""
    text = DOCS.read_text().split("## The metrics", 1)[1].split("\n## ", 1)[0]
    found: dict[str, set[str]] = {service: set() for service in SERVICE_COLUMN.values()}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        names = re.findall(r"`([a-z_]+)`", cells[0]) if line.startswith("| `") else []
        if not names:
            continue
        where = cells[-1].split(" (")[0]
        if where.endswith(" with `REDIS_URL`"):  # only where Redis is configured
            where = where.removesuffix(" with `REDIS_URL`")
            OPTIONAL.update(names)
        services = (
            list(found) if where == "all" else [SERVICE_COLUMN[s.strip()] for s in where.split(",")]
        )
        for service in services:
            found[service].update(names)
    return found
