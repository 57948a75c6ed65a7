"""GET /metrics of a test stack's service, parsed by prometheus-client's own parser."""

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
