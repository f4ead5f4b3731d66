"""A real hub (uvicorn on the tests' loop, real Postgres and Redis) and Debian's headless Chromium."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Error, Page, async_playwright
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.app import create_app
from hub.settings import Settings
from tests.support.api import Api
from tests.support.server import serve_app

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that phones home or updates itself in the middle of a test.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
async def hub_url(settings: Settings) -> AsyncIterator[str]:
    async with serve_app(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        raise RuntimeError(f"Expected Debian's Chromium at {CHROMIUM}; install it with: apt-get install -y chromium.")
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    # Playwright drives the system browser; it never downloads its own (no `playwright install`).
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, timeout=30_000)
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh context per test (its own sessionStorage and cookies); a script error fails the test."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = await context.new_page()
    errors: list[Error] = []
    blocked: list[str] = []
    page.on("pageerror", lambda error: errors.append(error))
    # The page's Content-Security-Policy must allow everything the page itself does.
    page.on(
        "console", lambda message: blocked.append(message.text) if "Content Security Policy" in message.text else None
    )
    yield page
    await context.close()
    assert not errors, f"The page raised: {errors}"
    assert not blocked, f"The Content-Security-Policy blocked: {blocked}"


@pytest.fixture
async def api(hub_url: str, clean_db: AsyncEngine) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=hub_url, timeout=10.0) as client:
        yield Api(client)


@pytest.fixture
def owner() -> str:
    return f"owner-{uuid.uuid4().hex[:8]}"
