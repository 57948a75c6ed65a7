"""The sale dashboard in headless Chromium, offline: a sale created after the page opened
appears without a reload, every frame during the sale tells one moment (the stock sold
beside the answers counted), the charts' axes carry no "-0" and the right units, and the
sale's story (peak orders/s and answers/s, first and last order, the time to sell out)
ends at the databases' own figures; screenshots under test-artifacts/."""

import asyncio
import math
from datetime import UTC, datetime

import aiohttp

from testkit.poll import eventually
from tests.support.browser import ARTIFACTS, offline_page
from tests.support.factories import Api
from tests.support.sales import buyer_tokens, paced_sale, shuffled_twice

STOCK = 300
FIGURES = (
    "remaining", "stock", "sold", "created-total", "answers-total", "peak-orders",
    "peak-answers", "peak-p99", "first-order", "last-order", "sell-out", "orders-total",
    "state-created", "state-paid", "backlog", "as-of",
)  # fmt: skip
# Every text the page draws on each canvas (a wrapper of fillText, installed before its script).
RECORD_DRAWN_TEXT = """
window.drawnText = {};
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
  (window.drawnText[this.canvas.id] ||= new Set()).add(String(text));
  return fillText.call(this, text, ...rest);
};
"""


async def frame(page) -> dict[str, str]:
    """The figures as one frame shows them: read in one go, between two frames."""
    return await page.evaluate(
        "(ids) => Object.fromEntries(ids.map((id) => [id, "
        "document.getElementById(id).textContent]))",
        list(FIGURES),
    )


def number(text: str) -> float | None:
    text = text.replace(",", "")
    try:
        return float(text)
    except ValueError:
        return None


def clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%S.%f")[:12]


async def test_the_dashboard_keeps_the_sales_story_and_ends_at_the_truth(browser, own_stack):
    stack = own_stack(SECKILL_WORKERS="2")
    tokens = buyer_tokens(stack, 400)
    async with aiohttp.ClientSession() as session:
        api = Api(stack, session)
        base = stack.activity_url
        page, blocked = await offline_page(browser, base)
        await page.add_init_script(RECORD_DRAWN_TEXT)
        await page.set_viewport_size({"width": 1440, "height": 1300})
        response = await page.goto(f"{base}/dashboard")
        assert "script-src 'self';" in (await response.all_headers())["content-security-policy"]
        await page.locator("#credential").fill(await api.admin_token())

        # Created after the page opened: it appears in the list, the credential kept.
        activity = await api.create_activity(name="Watched live", stock=STOCK)
        option = page.locator(f'#activity option[value="{activity["id"]}"]')
        await option.wait_for(state="attached", timeout=15_000)
        await page.locator("#activity").select_option(str(activity["id"]))
        await page.locator("#watch").click()
        await eventually(
            lambda: _remaining_is(page, STOCK), 15, "the first snapshot with the stock"
        )

        requests = shuffled_twice(tokens)
        sale = asyncio.create_task(paced_sale(api, activity["id"], requests, per_second=200))
        frames: list[dict[str, str]] = []
        during_kept = False
        while not sale.done():
            shown = await frame(page)
            frames.append(shown)
            remaining = number(shown["remaining"])
            if not during_kept and remaining is not None and 0 < remaining < STOCK:
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "dashboard-during-sale.png"))
                during_kept = True
            await asyncio.sleep(0.2)
        statuses = await sale
        assert statuses[201] == STOCK, statuses
        for _ in range(15):  # the frames after the last answer, until the counts settle
            frames.append(await frame(page))
            await asyncio.sleep(0.2)
        assert during_kept, f"the page showed only {[f['remaining'] for f in frames]}"

        # Each frame: the units sold by its stock figure and the created answers it counted
        # tell the same moment (within a tenth of the stock: a frame is a second wide).
        for shown in frames:
            sold, created = number(shown["sold"]), number(shown["created-total"])
            if sold is not None and created is not None:
                assert abs(sold - created) <= STOCK / 10, shown

        [records] = stack.query(
            "activity_service",
            "SELECT COUNT(*) AS n, "
            "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', MIN(created_at)) AS first_us, "
            "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', MAX(created_at)) AS last_us "
            "FROM seckill_records WHERE activity_id = %s",
            (activity["id"],),
        )
        per_second = stack.query(
            "activity_service",
            "SELECT TIMESTAMPDIFF(SECOND, '1970-01-01', created_at) AS s, COUNT(*) AS n "
            "FROM seckill_records WHERE activity_id = %s GROUP BY s",
            (activity["id"],),
        )
        first, last = records["first_us"] / 1e6, records["last_us"] / 1e6
        truth = {
            "remaining": "0",
            "sold": f"{STOCK}",
            "created-total": f"{STOCK}",
            "answers-total": f"{sum(statuses.values())}",
            "peak-orders": f"{max(row['n'] for row in per_second)}",
            "first-order": clock(first),
            "last-order": clock(last),
        }

        def states() -> dict[str, int]:
            rows = stack.query(
                "order_service",
                "SELECT status, COUNT(*) AS n FROM orders WHERE activity_id = %s GROUP BY status",
                (activity["id"],),
            )
            return {row["status"]: row["n"] for row in rows}

        async def at_the_truth() -> dict | None:
            shown = await frame(page)
            held = states()
            expected = {
                **truth,
                "orders-total": f"{STOCK}",
                "state-created": f"{held.get('created', 0)}",
                "backlog": "0",
            }
            return shown if {k: shown[k] for k in expected} == expected else None

        shown = await eventually(at_the_truth, 20, "the page at the databases' figures")
        assert records["n"] == STOCK and sum(states().values()) == STOCK
        peak_answers = number(shown["peak-answers"])
        assert number(shown["peak-orders"]) <= peak_answers <= sum(statuses.values())
        assert 0 < number(shown["peak-p99"]) <= 4000
        assert math.isclose(number(shown["sell-out"]), last - first, abs_tol=0.001)
        await page.screenshot(path=str(ARTIFACTS / "dashboard-after-sale.png"))

        drawn = await page.evaluate(
            "Object.fromEntries(Object.entries(window.drawnText).map(([k, v]) => [k, [...v]]))"
        )
        for canvas, texts in drawn.items():
            assert "-0" not in texts, canvas
        assert "orders" in drawn["chart-outbox"] and "orders / s" not in drawn["chart-outbox"]
        assert "seconds" in drawn["chart-lag"]
        assert blocked == []


async def _remaining_is(page, stock: int) -> bool:
    return number(await page.locator("#remaining").inner_text()) == stock
