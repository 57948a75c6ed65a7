"""The sale dashboard in headless Chromium, offline: its numbers move while a sale runs
and end at the truth of the databases; screenshots of both under test-artifacts/."""

import asyncio
import random
from collections import Counter

import aiohttp
from playwright.async_api import Page

from common.auth import issue_token, load_private_key
from testkit.poll import eventually
from tests.support.browser import ARTIFACTS, offline_page
from tests.support.factories import Api

SYNTHETIC_IDS_FROM = 20_000_000  # buyers with tokens minted by the test, as make bench does


async def paced_sale(api: Api, activity_id: int, tokens: list[str], per_second: float) -> Counter:
    """The load script: every token asks twice, shuffled, at about per_second requests."""
    requests = tokens * 2
    random.shuffle(requests)
    statuses: Counter = Counter()
    gate = asyncio.Semaphore(8)

    async def one(token: str, delay: float) -> None:
        await asyncio.sleep(delay)
        async with gate:
            statuses[(await api.seckill(activity_id, token)).status] += 1

    await asyncio.gather(*(one(t, n / per_second) for n, t in enumerate(requests)))
    return statuses


async def figure(page: Page, name: str) -> int | None:
    text = (await page.locator(f"#{name}").inner_text()).replace(",", "")
    return int(text) if text.isdigit() else None


async def test_the_dashboard_shows_a_sale_live_and_ends_at_the_truth(browser, own_stack):  # noqa: F811
    stack = own_stack(SECKILL_WORKERS="2")
    stock = 300
    key = load_private_key((stack.tmp / "token_key.pem").read_text())
    tokens = [issue_token(key, SYNTHETIC_IDS_FROM + n, False, 3600) for n in range(400)]
    async with aiohttp.ClientSession() as session:
        api = Api(stack, session)
        activity = await api.create_activity(name="Watched live", stock=stock)
        base = stack.activity_url
        page, blocked = await offline_page(browser, base)
        await page.set_viewport_size({"width": 1440, "height": 1000})
        response = await page.goto(f"{base}/dashboard")
        assert "script-src 'self';" in (await response.all_headers())["content-security-policy"]
        await page.locator(f'#activity option[value="{activity["id"]}"]').wait_for(state="attached")
        await page.locator("#credential").fill(await api.admin_token())
        await page.locator("#activity").select_option(str(activity["id"]))
        await page.locator("#watch").click()
        await eventually(lambda: figure(page, "remaining"), 10, "the first snapshot")
        assert await figure(page, "remaining") == stock

        sale = asyncio.create_task(paced_sale(api, activity["id"], tokens, per_second=200))
        seen: set[int] = set()
        during_kept = False
        while not sale.done():
            remaining = await figure(page, "remaining")
            seen.add(remaining)
            if not during_kept and remaining is not None and 0 < remaining < stock:
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "dashboard-during-sale.png"))
                during_kept = True
            await asyncio.sleep(0.2)
        statuses = await sale
        assert statuses[201] == stock, statuses
        assert during_kept, f"the page showed only {sorted(seen, key=str)} while selling"

        def truth() -> dict[str, int]:
            rows = stack.query(
                "order_service",
                "SELECT status, COUNT(*) AS n FROM orders WHERE activity_id = %s GROUP BY status",
                (activity["id"],),
            )
            return {row["status"]: row["n"] for row in rows}

        async def at_the_truth() -> bool:
            states = truth()
            return (
                await figure(page, "remaining") == 0
                and await figure(page, "orders-total") == stock == sum(states.values())
                and await figure(page, "state-created") == states.get("created")
                and await figure(page, "state-paid") == states.get("paid", 0)
                and await figure(page, "backlog") == 0
            )

        await eventually(at_the_truth, 20, "the page at the databases' figures")
        await page.screenshot(path=str(ARTIFACTS / "dashboard-after-sale.png"))
        assert blocked == []
