"""A real Prometheus (Debian's) scrapes a test stack every second through a two-second sale
of 300 units, with compose's configuration (its Consul discovery swapped for the stack's
ports): every query of the Grafana board returns data, increase() of created answers over the
sale is the units sold, each service's /metrics passes `promtool check metrics`, and each
service exports exactly the families docs/metrics.md lists for it, every known label set at
0 before anything happened."""

import asyncio
import json
import math
import random
import time

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

import activity_service.metrics
import order_service.metrics
import user_service.metrics
from testkit.poll import eventually
from tests.support.factories import Api
from tests.support.metrics import OPTIONAL, documented_families
from tests.support.prometheus import (
    ROOT,
    promtool,
    query,
    running_prometheus,
    static_config,
    targets_up,
)
from tests.support.sales import buyer_tokens, paced_sale

BOARD = ROOT / "deploy" / "grafana" / "dashboards" / "seckill.json"
SERVICES = ("user_service", "activity_service", "order_service")
OWN = {
    "user_service": user_service.metrics,
    "activity_service": activity_service.metrics,
    "order_service": order_service.metrics,
}
STOCK = 300
BUYERS = 360
PER_SECOND = 170  # 360 buyers paced over about 2.1 s (longer on a busy machine)


async def metrics_text(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url + "/metrics") as response:
        assert response.status == 200
        return await response.text()


def families(text: str) -> dict[str, list]:
    """Exported name (counters with _total) -> samples."""
    found = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        found[name] = family.samples
    return found


def board_queries() -> list[tuple[str, str]]:
    board = json.loads(BOARD.read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


async def check_exports(session: aiohttp.ClientSession, stack, before_any_sale: bool) -> None:
    documented = documented_families()
    for service in SERVICES:
        text = await metrics_text(session, stack.url(service))
        linted = promtool("check", "metrics", stdin=text)
        assert linted.returncode == 0 and not (linted.stdout + linted.stderr).strip(), (
            service,
            linted.stdout + linted.stderr,
        )
        exported = families(text)
        # Families with a label only the traffic sets (a peer, an activity on sale) may wait.
        assert set(exported) <= documented[service], (service, set(exported) - documented[service])
        if not before_any_sale:
            missing = documented[service] - OPTIONAL - set(exported)
            assert not missing, (service, missing)
        for family, label_sets in OWN[service].KNOWN:
            name = family._name + ("_total" if family._type == "counter" else "")
            present = {tuple(s.labels[n] for n in family._labelnames) for s in exported[name]}
            assert set(label_sets) <= present, (service, name, set(label_sets) - present)


async def test_prometheus_sees_a_two_second_sale_on_every_board_query(own_stack, tmp_path):
    stack = own_stack(SECKILL_WORKERS="2")
    config = static_config({s: stack.ports[s] for s in SERVICES}, scrape_interval="1s")
    async with aiohttp.ClientSession() as session:
        api = Api(stack, session)
        await check_exports(session, stack, before_any_sale=True)
        activity = await api.create_activity(name="Scraped", stock=STOCK)
        tokens = buyer_tokens(stack, BUYERS)
        random.shuffle(tokens)
        with running_prometheus(tmp_path / "prometheus", config) as prometheus:

            async def all_up() -> bool:
                return await targets_up(session, prometheus) == dict.fromkeys(SERVICES, "up")

            await eventually(all_up, 30, "Prometheus scraping the three services")
            await asyncio.sleep(5)  # a few scrapes before the sale
            started = time.time()
            statuses = await paced_sale(api, activity["id"], tokens, PER_SECOND)
            ended = time.time()
            assert statuses[201] == STOCK, statuses
            [row] = stack.query(
                "activity_service",
                "SELECT stock - remaining AS sold FROM activities WHERE id = %s",
                (activity["id"],),
            )
            sold = int(row["sold"])
            assert sold == STOCK

            async def delivered() -> bool:
                backlog = await query(session, prometheus, "max(seckill_outbox_backlog)")
                return bool(backlog) and float(backlog[0]["value"][1]) == 0

            await eventually(delivered, 30, "the outbox empty as Prometheus sees it")
            await asyncio.sleep(4)  # every worker's last counts flushed and scraped
            # At a scrape's own time, so increase() extrapolates nothing past the last sample
            # (nor before the first: the series starts at 0, so no further back than that).
            [scraped] = await query(
                session, prometheus, 'timestamp(seckill_answers_total{outcome="created"})'
            )
            at = float(scraped["value"][1])
            span = math.ceil(at - started + 5)
            created = await query(
                session,
                prometheus,
                f'sum(increase(seckill_answers_total{{outcome="created"}}[{span}s]))',
                at,
            )
            assert created, "no created answers in Prometheus"
            seen = float(created[0]["value"][1])
            assert abs(seen - sold) <= 0.05 * sold, f"increase() {seen:.1f}, {sold} sold"

            # The series was there, at 0, before the first order: the burst is an increase.
            before = await query(
                session, prometheus, 'seckill_answers_total{outcome="created"}', started - 0.5
            )
            assert [float(sample["value"][1]) for sample in before] == [0.0], before

            # Every board query just after the sale: data, and a number in at least one series.
            evaluated_at = ended + 2
            for title, expr in board_queries():
                result = await query(session, prometheus, expr, evaluated_at)
                values = [float(sample["value"][1]) for sample in result]
                assert any(math.isfinite(v) for v in values), (title, expr, result)
            orders = await query(
                session,
                prometheus,
                'max_over_time(sum(rate(seckill_answers_total{outcome="created"}[30s]))[15s:1s])',
                evaluated_at,
            )
            assert orders and float(orders[0]["value"][1]) > 0, "the orders panel stayed flat"
        await check_exports(session, stack, before_any_sale=False)
