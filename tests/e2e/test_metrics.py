"""GET /metrics from real processes with two workers each: the counts add up to the sale."""

import re

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from testkit.poll import eventually
from testkit.stack import free_port
from tests.support.factories import Api
from tests.support.metrics import by_label, scrape, value
from tests.support.seckill_checks import check_invariants, storm

SECKILL_ROUTE = "/activities/<activity_id:int>/seckill"
# Labels whose values may be numbers: bucket bounds, HTTP statuses, MySQL error codes,
# and the remaining-stock gauge's activity (bounded to the activities on sale).
NUMERIC_LABELS = {"le", "status", "code", "activity"}


async def test_metrics_of_two_workers_add_up_to_the_sale_with_bounded_labels(own_stack):
    stack = own_stack(SECKILL_WORKERS="2")
    async with aiohttp.ClientSession() as session:
        api = Api(stack, session)
        stock = 25
        accounts = await api.new_users(40)
        activity = await api.create_activity(stock=stock)
        result = await storm(api, activity["id"], accounts, per_user=3, concurrency=32)
        await check_invariants(stack, activity["id"], stock, result)
        for service in ("user_service", "activity_service", "order_service"):
            for path in ("/nope/12345", f"/activities/{activity['id']}/nothing"):
                await api.call("GET", service, path)

        seen = {
            "created": result.statuses[201],
            "repeat": result.statuses[200],
            **{code: n for code, n in result.codes.items()},
        }
        assert seen["created"] == stock and seen["sold_out"] > 0

        async def activity_counts_match() -> bool:
            samples = await scrape(api, "activity_service")
            return by_label(samples, "seckill_answers_total", "outcome") == seen

        await eventually(activity_counts_match, 10, "seckill answers by outcome as the client saw")
        activity_metrics = await scrape(api, "activity_service")
        assert (
            value(
                activity_metrics,
                "http_requests_total",
                route=SECKILL_ROUTE,
                method="POST",
                status="201",
            )
            == stock
        )
        assert value(
            activity_metrics, "http_request_duration_seconds_count", route=SECKILL_ROUTE
        ) == sum(result.statuses.values())
        assert value(activity_metrics, "seckill_relay_delivered_orders_total") == stock
        # Batches carry every buyer that reached the database: the stock's and some refused.
        assert value(activity_metrics, "seckill_batch_size_sum") >= stock
        assert value(activity_metrics, "seckill_batch_duration_seconds_count") >= 1
        assert value(activity_metrics, "seckill_handoff_duration_seconds_count") >= 1
        assert value(activity_metrics, "db_pool_connections_max") == 2 * 10  # two workers' pools

        async def orders_counted() -> bool:
            samples = await scrape(api, "order_service")
            return value(samples, "orders", status="created") == stock

        await eventually(orders_counted, 10, "order_service's orders gauge at the stock")

        async def users_counted() -> bool:
            samples = await scrape(api, "user_service")
            return by_label(samples, "user_registrations_total", "result") == {
                "created": len(accounts)
            } and by_label(samples, "user_logins_total", "result") == {"ok": len(accounts) + 1}

        await eventually(users_counted, 10, "sign-ups and logins (the admin's too)")

        order_nos = result.order_nos
        user_ids = {str(account.id) for account in accounts}
        for service in ("user_service", "activity_service", "order_service"):
            samples = await scrape(api, service)
            routes = set()
            for _, labels in samples:
                for name, label in labels:
                    assert label not in order_nos and "12345" not in label, (service, name, label)
                    if name == "route":
                        routes.add(label)
                    if name not in NUMERIC_LABELS:
                        # Swagger UI's files are served under the library's version: a route
                        # pattern, not a number from a request.
                        bare = re.sub(r"^/docs/swagger-ui/[\d.]+/", "/docs/swagger-ui/", label)
                        assert not re.search(r"\d{2,}", bare), (service, name, label)
                        assert label not in user_ids, (service, name, label)
            assert "unmatched" in routes, service
            assert not any(re.search(r"/\d+(/|$)", route) for route in routes), routes


async def test_metrics_start_from_zero_at_each_start_and_move_to_their_own_port_or_off(
    own_stack,
):
    stack = own_stack(SECKILL_WORKERS="2")
    async with aiohttp.ClientSession() as session:
        api = Api(stack, session)
        await api.new_users(3)
        await eventually(lambda: users_logged_in(api.stack.url("user_service"), 3), 10, "3 logins")

    # The same PROMETHEUS_MULTIPROC_DIR, emptied at start-up: the earlier run's files are
    # not counted again.
    port = free_port()
    stack.stop("user_service")
    stack.start("user_service", METRICS_PORT=str(port))
    stack.stop("order_service")
    stack.start("order_service", METRICS="off")
    async with aiohttp.ClientSession() as session:
        api = Api(stack, session)
        await api.new_user()
        metrics_url = f"http://127.0.0.1:{port}"
        await eventually(lambda: users_logged_in(metrics_url, 1), 10, "1 login")
        assert (await api.call("GET", "user_service", "/metrics")).status == 404
        assert (await api.call("GET", "order_service", "/metrics")).status == 404
    assert not any(stack.tmp.joinpath("metrics-order_service").iterdir())


async def users_logged_in(base_url: str, logins: int) -> bool:
    # A connection of its own each time: the metrics port's server closes them after an answer.
    async with aiohttp.request("GET", base_url + "/metrics") as response:
        text = await response.text()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    logins_family = families.get("user_logins")
    found = {
        sample.labels["result"]: sample.value
        for sample in (logins_family.samples if logins_family else [])
        if sample.name == "user_logins_total"
    }
    # Every result is exported at 0 from start-up; only the logins made count.
    return {result: n for result, n in found.items() if n} == {"ok": logins}
