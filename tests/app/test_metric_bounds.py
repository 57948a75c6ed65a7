"""What a client writes never becomes a metric label, and only /metrics serves metrics."""

import asyncio
import random
import string

import pytest

from tests.support.expect import assert_problem
from tests.support.metrics import scrape

SERVICES = ("user_service", "activity_service", "order_service")


async def raw_request(port: int, method: str, path: str) -> bytes:
    """One request with any method (an HTTP client library checks what a method may be)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()


async def metrics_text(api, service: str) -> str:
    async with api.session.get(api.stack.url(service) + "/metrics") as response:
        assert response.status == 200
        return await response.text()


def request_series(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith("http_requests_total{"))


async def test_a_thousand_made_up_methods_add_one_series_and_not_the_metrics_size(api, stack):
    port = stack.ports["order_service"]
    await raw_request(port, "BREWCOFE", "/no/such/route")  # the one label they all share
    await raw_request(port, "BREWCOFE", "/orders")
    await metrics_text(api, "order_service")  # the scrape's own series exist from now on
    before = await metrics_text(api, "order_service")
    letters = string.ascii_uppercase
    methods = ["".join(random.choices(letters, k=8)) for _ in range(990)]
    methods += ["".join(random.choices(letters, k=4000)) for _ in range(10)]
    for start in range(0, len(methods), 50):
        answers = await asyncio.gather(
            *(raw_request(port, m, "/no/such/route") for m in methods[start : start + 50])
        )
        assert all(a.startswith((b"HTTP/1.1 404", b"HTTP/1.1 405")) for a in answers)
    after = await metrics_text(api, "order_service")
    assert request_series(after) - request_series(before) <= 2
    # Only counts grew (a digit or two each), nothing of the methods was kept.
    assert len(after) - len(before) < 2_000, len(after) - len(before)
    samples = await scrape(api, "order_service")
    methods_seen = {
        dict(labels)["method"] for (name, labels) in samples if name == "http_requests_total"
    }
    assert methods_seen <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("path", ["/metrics/", "/metrics//", "/metrics/x"])
async def test_only_the_exact_path_serves_the_metrics(api, service, path):
    assert_problem(await api.call("GET", service, path), 404, "not_found")
    assert (await api.call("GET", service, "/metrics")).status == 200
