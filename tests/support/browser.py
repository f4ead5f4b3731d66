"""What the e2e tests share about the dashboard page: the workflow they play, how they find a card,
its steps and the connection badge, and where pictures for people go."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Locator, Page, expect

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

KEYS = ("queued", "creating_server", "installing_dependencies", "configuring_agent", "running")

# (callback without job_id, the five step states it leads to)
WORKFLOW: list[tuple[dict[str, Any], tuple[str, ...]]] = [
    ({"status": "provisioning"}, ("completed", "active", "pending", "pending", "pending")),
    ({"status": "provisioning", "step": "vm_created"}, ("completed", "completed", "active", "pending", "pending")),
    (
        {"status": "provisioning", "step": "network_configured"},
        ("completed", "completed", "active", "pending", "pending"),
    ),
    (
        {"status": "provisioning", "step": "ansible_started"},
        ("completed", "completed", "completed", "active", "pending"),
    ),
    (
        {"status": "provisioning", "step": "ansible_complete"},
        ("completed", "completed", "completed", "completed", "active"),
    ),
    ({"status": "running", "metadata": {"ip_address": "10.0.0.7"}}, ("completed",) * 5),
]


def card(page: Page, agent_id: str) -> Locator:
    return page.locator(f'[data-agent-id="{agent_id}"]')


def badge(page: Page) -> Locator:
    return page.locator("[data-connection]")


async def open_dashboard(page: Page, hub_url: str, token: str) -> None:
    await page.goto(f"{hub_url}/#token={token}")


async def expect_states(page: Page, agent_id: str, states: tuple[str, ...], timeout: float) -> None:
    track = card(page, agent_id).locator("ol")
    for key, state in zip(KEYS, states, strict=True):
        await expect(track.locator(f'[data-step="{key}"]')).to_have_attribute("data-state", state, timeout=timeout)
    active = track.locator('[aria-current="step"]')
    if "active" in states:
        await expect(active).to_have_count(1, timeout=timeout)
        await expect(active).to_have_attribute("data-state", "active", timeout=timeout)
    else:
        await expect(active).to_have_count(0, timeout=timeout)
