"""A dashboard on the main application's own origin, embedding the hub: it imports statushub.js from
the hub, reads the REST API and holds the websocket across origins, for allowed origins only."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from litestar import Litestar, get
from litestar.response import Response
from playwright.async_api import Browser, ConsoleMessage, Page, WebSocketRoute, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.app import create_app
from hub.settings import Settings
from tests.support.api import Api, token_for
from tests.support.server import free_port, serve_app

pytestmark = pytest.mark.e2e

LIVE_MS = 10_000
POLL_MS = 15_000

# The embedding page: imports the client from the hub, renders one agent's version and step states.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>app</title></head>
<body data-connection="none">
<p id="version">none</p><p id="states"></p>
<script type="module">
  import { StatusHubClient } from "HUB/static/statushub.js";
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  const show = (status) => {
    document.getElementById("version").textContent = `v${status.version}`;
    document.getElementById("states").textContent = status.steps.map((s) => s.state).join(",");
  };
  const hub = new StatusHubClient({
    baseUrl: "HUB", token, onStatus: show,
    onConnection: (state) => { document.body.dataset.connection = state; },
  });
  const agents = await hub.listAgents();
  agents.forEach((agent) => agent.status && show(agent.status));
  hub.watch(agents.map((agent) => agent.id));
</script></body></html>"""


@asynccontextmanager
async def main_application(hub_url: str, port: int) -> AsyncIterator[str]:
    """The main application's server: one page, on its own origin."""

    @get("/", sync_to_thread=False)
    def page() -> Response[str]:
        return Response(PAGE.replace("HUB", hub_url), media_type="text/html")

    async with serve_app(Litestar([page]), port=port) as url:
        yield url


@pytest.fixture
async def allowed_port() -> int:
    return free_port()


@pytest.fixture
async def embedded_hub(settings: Settings, allowed_port: int, clean_db: AsyncEngine) -> AsyncIterator[tuple[str, Api]]:
    allowed = dataclasses.replace(settings, allowed_origins=(f"http://127.0.0.1:{allowed_port}",))
    async with serve_app(create_app(allowed)) as hub_url, httpx.AsyncClient(base_url=hub_url, timeout=10) as client:
        yield hub_url, Api(client)


async def test_an_allowed_origin_shows_live_steps_and_falls_back_to_polling(
    page: Page, embedded_hub: tuple[str, Api], allowed_port: int
) -> None:
    hub_url, api = embedded_hub
    _, job_id = await api.new_job("acme")
    sockets_allowed = True

    async def gate(socket: WebSocketRoute) -> None:
        if sockets_allowed:
            socket.connect_to_server()
        else:
            await socket.close(code=1011, reason="Refused by the test.")

    await page.route_web_socket(re.compile(r"/api/ws$"), gate)
    async with main_application(hub_url, allowed_port) as app_url:
        await page.goto(f"{app_url}/#token={token_for('acme')}")
        await expect(page.locator("body")).to_have_attribute("data-connection", "live", timeout=LIVE_MS)
        await expect(page.locator("#version")).to_have_text("v1", timeout=LIVE_MS)
        reply = await api.callback({"job_id": job_id, "status": "provisioning", "step": "vm_created"})
        await expect(page.locator("#version")).to_have_text(f"v{reply.json()['version']}", timeout=LIVE_MS)
        await expect(page.locator("#states")).to_have_text("completed,completed,active,pending,pending")

        # The socket is blocked from now on: the page polls the hub's REST API across origins.
        sockets_allowed = False
        await page.reload()
        await expect(page.locator("body")).to_have_attribute("data-connection", "polling", timeout=POLL_MS)
        reply = await api.callback({"job_id": job_id, "status": "provisioning", "step": "ansible_started"})
        await expect(page.locator("#version")).to_have_text(f"v{reply.json()['version']}", timeout=POLL_MS)
        await expect(page.locator("#states")).to_have_text("completed,completed,completed,active,pending")


async def test_an_allowed_origin_reads_an_agents_history(
    page: Page, embedded_hub: tuple[str, Api], allowed_port: int
) -> None:
    hub_url, api = embedded_hub
    agent_id, job_id = await api.new_job("acme")
    await api.callback({"job_id": job_id, "status": "provisioning"})
    reply = await api.callback({"job_id": job_id, "status": "provisioning", "step": "vm_created"})
    async with main_application(hub_url, allowed_port) as app_url:
        await page.goto(f"{app_url}/#token={token_for('acme')}")
        await expect(page.locator("#version")).to_have_text(f"v{reply.json()['version']}", timeout=LIVE_MS)
        page_of_history = await page.evaluate(
            """async ([hub, token, agentId]) => {
                const { StatusHubClient } = await import(`${hub}/static/statushub.js`);
                const client = new StatusHubClient({ baseUrl: hub, token });
                try {
                    return await client.listEvents(agentId, { limit: 1 });
                } finally {
                    client.close();
                }
            }""",
            [hub_url, token_for("acme"), agent_id],
        )
    assert [event["step"] for event in page_of_history["events"]] == ["vm_created"]
    assert page_of_history["next"] is not None


async def test_an_origin_that_is_not_allowed_gets_nothing(browser: Browser, embedded_hub: tuple[str, Api]) -> None:
    hub_url, api = embedded_hub
    await api.new_job("acme")
    context = await browser.new_context()
    try:
        page = await context.new_page()
        refused: list[str] = []

        def note(message: ConsoleMessage) -> None:
            if "CORS policy" in message.text:
                refused.append(message.text)

        page.on("console", note)
        async with main_application(hub_url, free_port()) as app_url:
            async with page.expect_console_message(lambda m: "CORS policy" in m.text, timeout=LIVE_MS):
                await page.goto(f"{app_url}/#token={token_for('acme')}")
            assert any("statushub.js" in text for text in refused), refused
            # Nor can the page read the API itself, with the token in hand.
            reached = await page.evaluate(
                """async ([hub, token]) => {
                    try {
                        const r = await fetch(`${hub}/api/agents`, {headers: {Authorization: `Bearer ${token}`}});
                        return r.status;
                    } catch (error) { return "blocked"; }
                }""",
                [hub_url, token_for("acme")],
            )
            assert reached == "blocked"
            await expect(page.locator("#version")).to_have_text("none")
    finally:
        await context.close()
