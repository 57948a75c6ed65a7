"""Headless Chromium for the browser tests, offline: only the service under test is reachable.

Debian's `chromium`, driven by Playwright; every request to anything but the service is aborted,
as on a machine without internet access. Screenshots go to test-artifacts/.
"""

import os
from pathlib import Path

import pytest
from playwright.async_api import Page, Route, async_playwright

from testkit.stack import ROOT

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--headless=new",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
]
TIMEOUT_MS = 30_000


def require_chromium() -> str:
    # Never skip: a machine without the browser must fail here (`make test` installs it).
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (as `make test` does)")
    return CHROMIUM


@pytest.fixture
async def browser():
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=require_chromium(), args=CHROMIUM_ARGS, timeout=TIMEOUT_MS
        )
        yield browser
        await browser.close()


async def offline_page(browser, base: str) -> tuple[Page, list[str]]:
    """A page that may reach the service and nothing else; returns what it tried elsewhere,
    and every Content-Security-Policy violation the browser reports (as "csp: ...")."""
    context = await browser.new_context(viewport={"width": 1280, "height": 2000})
    context.set_default_timeout(TIMEOUT_MS)
    blocked: list[str] = []

    async def only_the_service(route: Route) -> None:
        url = route.request.url
        if url == base or url.startswith(base + "/"):
            await route.continue_()
        else:
            blocked.append(url)
            await route.abort("internetdisconnected")

    await context.route("**/*", only_the_service)
    page = await context.new_page()
    note_csp_violations(page, blocked)
    return page, blocked


def note_csp_violations(page: Page, into: list[str]) -> None:
    """Every Content-Security-Policy violation the page's console reports, as "csp: ..."."""
    page.on(
        "console",
        lambda message: (
            into.append(f"csp: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
