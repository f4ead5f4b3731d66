"""The dashboard page in a real browser against a real hub: live steps, polling fallback, errors."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Page, Route, WebSocketRoute, expect

from tests.support.api import Api, token_for
from tests.support.browser import ARTIFACTS, WORKFLOW, badge, card, expect_states, open_dashboard

pytestmark = pytest.mark.e2e

LIVE_MS = 10_000  # a pushed status reaches the page well within this
POLL_MS = 15_000  # a few poll intervals
RECONNECT_MS = 30_000  # the client's reconnect backoff is capped at 10 s; a wide margin on top


async def play(api: Api, page: Page, agent_id: str, job_id: str, timeout: float) -> None:
    """Send the whole workflow; after each callback the page must show its version and states."""
    for body, states in WORKFLOW:
        reply = await api.callback({"job_id": job_id, **body})
        assert reply.status_code == 200, reply.text
        version = reply.json()["version"]
        await expect(card(page, agent_id).locator(".version")).to_have_text(f"v{version}", timeout=timeout)
        await expect_states(page, agent_id, states, timeout)


async def test_steps_advance_live_as_callbacks_arrive(page: Page, api: Api, hub_url: str, owner: str) -> None:
    agent_id, job_id = await api.new_job(owner)
    others, _ = await api.new_job("someone-else")
    token = token_for(owner)
    addresses: list[str] = []
    page.on("request", lambda request: addresses.append(request.url))
    page.on("websocket", lambda socket: addresses.append(socket.url))

    await open_dashboard(page, hub_url, token)

    await expect(badge(page)).to_have_attribute("data-connection", "live", timeout=LIVE_MS)
    await expect_states(page, agent_id, ("active", "pending", "pending", "pending", "pending"), LIVE_MS)
    await expect(card(page, others)).to_have_count(0)
    assert "token" not in page.url, "The token must leave the address bar once it was read."
    await play(api, page, agent_id, job_id, LIVE_MS)
    agent = card(page, agent_id)
    await expect(agent.locator(".pill")).to_have_text("Running")
    await expect(agent.locator(".meta")).to_contain_text("10.0.0.7")

    assert (await api.callback({"job_id": job_id, "type": "heartbeat"})).status_code == 200
    await expect(agent.locator(".heartbeat")).to_have_text(re.compile(r"^last heartbeat \d+ s ago$"), timeout=LIVE_MS)
    assert addresses and not [address for address in addresses if token in address], "A token travelled in a URL."

    # sessionStorage keeps the token for a reload, although the address no longer has it.
    await page.reload()
    await expect_states(page, agent_id, ("completed",) * 5, LIVE_MS)
    await expect(badge(page)).to_have_attribute("data-connection", "live", timeout=LIVE_MS)


async def test_without_websockets_the_page_polls_then_goes_live_again(
    page: Page, api: Api, hub_url: str, owner: str
) -> None:
    agent_id, job_id = await api.new_job(owner)
    first_status = (await api.status(agent_id, owner)).json()
    sockets_allowed = False
    refused = 0

    async def gate(socket: WebSocketRoute) -> None:
        nonlocal refused
        if sockets_allowed:
            socket.connect_to_server()
        else:
            refused += 1
            await socket.close(code=1011, reason="Refused by the test.")

    await page.route_web_socket(re.compile(r"/api/ws$"), gate)
    await open_dashboard(page, hub_url, token_for(owner))

    await expect(badge(page)).to_have_attribute("data-connection", "polling", timeout=POLL_MS)
    await play(api, page, agent_id, job_id, POLL_MS)
    assert refused >= 2

    # A poll answered with an older version (a lagging cache, say) must not move the page back.
    stale_polls = asyncio.Queue[None]()

    async def answer_stale(route: Route) -> None:
        await route.fulfill(status=200, json=first_status, headers={"ETag": '"stale"'})
        stale_polls.put_nowait(None)

    await page.route(f"**/api/agents/{agent_id}/instance", answer_stale)
    async with asyncio.timeout(POLL_MS / 1000 * 2):
        # The second request starts only after the first answer was handled: a tick awaits them all.
        for _ in range(2):
            await stale_polls.get()
    await expect(card(page, agent_id).locator(".version")).to_have_text(f"v{len(WORKFLOW) + 1}")
    await expect_states(page, agent_id, WORKFLOW[-1][1], LIVE_MS)

    sockets_allowed = True
    await expect(badge(page)).to_have_attribute("data-connection", "live", timeout=RECONNECT_MS)
    # Polls still get the stale answer, so the next version can only come over the socket.
    reply = await api.callback({"job_id": job_id, "type": "heartbeat"})
    await expect(card(page, agent_id).locator(".version")).to_have_text(f"v{reply.json()['version']}", timeout=LIVE_MS)


async def test_a_failed_workflow_shows_the_error_on_its_step(page: Page, api: Api, hub_url: str, owner: str) -> None:
    agent_id, job_id = await api.new_job(owner)
    await open_dashboard(page, hub_url, token_for(owner))
    await expect(badge(page)).to_have_attribute("data-connection", "live", timeout=LIVE_MS)
    message = "Ansible failed: TASK [agent : install runtime] unreachable host 10.0.0.7."
    for body in WORKFLOW[:4]:
        await api.callback({"job_id": job_id, **body[0]})
    await api.callback({"job_id": job_id, "status": "failed", "step": "ansible_started", "error": message})

    await expect_states(page, agent_id, ("completed", "completed", "completed", "error", "pending"), LIVE_MS)
    failed_step = card(page, agent_id).locator('[data-step="configuring_agent"]')
    await expect(failed_step).to_contain_text(message)
    await expect(card(page, agent_id).locator(".pill")).to_have_text("Failed")
    await expect(card(page, agent_id).locator('[data-step="running"]')).not_to_contain_text(message)


@pytest.mark.parametrize(
    ("fragment", "title"),
    [("", "No dashboard token"), (f"#token={token_for('owner-1', ttl_seconds=-60)}", "expired")],
    ids=["no-token", "expired-token"],
)
async def test_a_missing_or_expired_token_gets_a_clear_message(
    page: Page, hub_url: str, fragment: str, title: str
) -> None:
    await page.goto(f"{hub_url}/{fragment}")
    notice = page.get_by_role("alert")
    await expect(notice).to_be_visible(timeout=LIVE_MS)
    await expect(notice).to_contain_text(title)
    await expect(notice).to_contain_text("link")
    await expect(page.locator("[data-agent-id]")).to_have_count(0)


async def test_screenshot_of_the_page_mid_provisioning(page: Page, api: Api, hub_url: str, owner: str) -> None:
    """Not an assertion on pixels: a picture for people to look at (git-ignored)."""
    plans = {"web-frontend": 6, "build-runner": 4, "data-pipeline": -1, "ml-inference": 2, "edge-cache": 0}
    agents: dict[str, str] = {}
    for name, steps in plans.items():
        agent = await api.create_agent(owner, name=name)
        job_id = (await api.provision(agent["id"]))["jobId"]
        agents[name] = agent["id"]
        bodies = [body for body, _ in WORKFLOW[: steps if steps >= 0 else 4]]
        if steps < 0:
            bodies.append({"status": "failed", "step": "ansible_started", "error": "Ansible failed: apt mirror 503."})
        for body in bodies:
            await api.callback({"job_id": job_id, **body})
        if steps:
            await api.callback({"job_id": job_id, "type": "heartbeat"})
    await open_dashboard(page, hub_url, token_for(owner))
    await expect(badge(page)).to_have_attribute("data-connection", "live", timeout=LIVE_MS)
    await expect_states(page, agents["build-runner"], WORKFLOW[3][1], LIVE_MS)
    await expect_states(page, agents["web-frontend"], WORKFLOW[5][1], LIVE_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True, animations="disabled")
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
