"""A real browser on /docs: offline, the operations render, and calls from the UI succeed.

Headless Chromium (Debian's `chromium`, driven by Playwright) with every request to
anything but the service aborted, as on a machine without internet access.
"""

import json

from playwright.async_api import Page

from testkit.altcha_solver import solve
from tests.support.browser import ARTIFACTS, offline_page


async def open_docs(page: Page, base: str) -> None:
    """/docs, checked for its security headers: framing forbidden, scripts only its own."""
    response = await page.goto(f"{base}/docs")
    headers = await response.all_headers()
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    policy = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self';" in policy, policy
    await page.locator(".opblock").first.wait_for()


def operation(page: Page, method: str, path: str):
    return page.locator(
        f".opblock.opblock-{method.lower()}",
        has=page.locator(f'.opblock-summary-path[data-path="{path}"]'),
    )


async def execute(page: Page, method: str, path: str, **params: str):
    """Try it out, Execute; returns the operation, and the live response's status and body."""
    block = operation(page, method, path)
    if not await block.locator(".try-out__btn").is_visible():
        await block.locator(".opblock-summary").click()
    await block.locator(".try-out__btn").click()
    for name, value in params.items():
        await block.locator(f'tr[data-param-name="{name}"] input').fill(value)
    await block.locator("button.execute").click()
    response = block.locator(".live-responses-table .response").first
    await response.wait_for()
    status = await response.locator(".response-col_status").inner_text()
    body = await response.locator(".response-col_description").inner_text()
    return block, status.strip(), body


async def keep_screenshots(page: Page, block, name: str) -> None:
    """The top of the page and the executed operation, under test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"swagger-ui-{name}-top.png"))
    await block.screenshot(path=str(ARTIFACTS / f"swagger-ui-{name}-executed.png"))


async def test_swagger_ui_renders_offline_and_executes_a_call(browser, api, stack):
    base = stack.activity_url
    document = (await api.call("GET", "activity_service", "/docs/openapi.json")).body
    await api.create_activity(name="Shown in Swagger UI")
    page, blocked = await offline_page(browser, base)

    await open_docs(page, base)

    expected = sum(len(item) for item in document["paths"].values())
    assert await page.locator(".opblock").count() == expected
    assert await page.locator(".information-container .title").inner_text() != ""
    block, status, body = await execute(page, "GET", "/activities")
    assert status == "200"
    assert "Shown in Swagger UI" in body
    await keep_screenshots(page, block, "activity_service-list")
    assert blocked == []


async def authorize(page: Page, token: str) -> None:
    await page.locator(".auth-wrapper .btn.authorize").click()
    bearer = page.locator(".dialog-ux .modal-ux form", has_text="bearer (http, Bearer)")
    await bearer.locator("input").fill(token)
    await bearer.locator(".btn.authorize").click()
    await bearer.locator(".btn-done").click()


async def test_authorize_with_a_token_from_post_tokens(browser, api, stack):
    base = stack.user_url
    account = await api.new_user()
    page, blocked = await offline_page(browser, base)

    await open_docs(page, base)
    await authorize(page, account.token)

    block, status, body = await execute(page, "GET", "/users/me")
    assert status == "200"
    assert account.username in body
    await keep_screenshots(page, block, "user_service-me")
    assert blocked == []
    # persistAuthorization is off: the token is in no storage, and a reload forgets it.
    stored = await page.evaluate("JSON.stringify(window.localStorage)")
    assert account.token not in stored
    # A fresh load of /docs (deepLinking put the open operation in the address's fragment; a
    # reload would reopen it while execute() opens it too).
    await page.goto(f"{base}/docs")
    await page.locator(".opblock").first.wait_for()
    block, status, _ = await execute(page, "GET", "/users/me")
    assert status == "401"


async def test_seckill_from_swagger_ui(browser, api, stack):
    base = stack.activity_url
    activity = await api.create_activity(stock=1)
    buyer = await api.new_user()
    page, blocked = await offline_page(browser, base)

    await open_docs(page, base)
    await authorize(page, buyer.token)
    path = "/activities/{activity_id}/seckill"
    block, status, body = await execute(page, "POST", path, activity_id=str(activity["id"]))

    assert status == "201"
    order_no = json.loads(body[body.index("{") : body.rindex("}") + 1])["order_no"]
    order = await api.call("GET", "order_service", f"/orders/{order_no}", buyer.token)
    assert order.status == 200 and order.body["user_id"] == buyer.id
    await keep_screenshots(page, block, "activity_service-seckill")
    assert blocked == []


async def test_seckill_with_the_challenge_on_from_swagger_ui(browser, api, stack):
    """The walkthrough of the README: get the challenge, solve it, paste it into X-Altcha."""
    base = stack.activity_url
    activity = await api.create_activity(stock=1, challenge=True, challenge_difficulty=1000)
    buyer = await api.new_user()
    page, blocked = await offline_page(browser, base)

    await page.goto(f"{base}/docs")
    await page.locator(".opblock").first.wait_for()
    await authorize(page, buyer.token)
    activity_id = str(activity["id"])
    _, status, body = await execute(
        page, "GET", "/activities/{activity_id}/challenge", activity_id=activity_id
    )
    assert status == "200", body
    challenge = json.loads(body[body.index("{") : body.rindex("}") + 1])
    path = "/activities/{activity_id}/seckill"
    params = {"activity_id": activity_id, "X-Altcha": solve(challenge)}
    block, status, body = await execute(page, "POST", path, **params)

    assert status == "201", body
    await keep_screenshots(page, block, "activity_service-seckill-challenge")
    assert blocked == []
