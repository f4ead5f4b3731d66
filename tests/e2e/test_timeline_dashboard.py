"""The timeline on the dashboard, in Chromium against a real hub whose stall limits are seconds, not
minutes: step durations, the active step's ticking clock and usual time, a stalled agent shown and
cleared live, the history dialog; and `status-hub simulate --stop-after` leading to a stall."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Locator, Page, Route, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.app import create_app
from hub.settings import Settings
from tests.support.api import Api, token_for
from tests.support.browser import ARTIFACTS, WORKFLOW, badge, card, expect_states, open_dashboard
from tests.support.process import demo_process, kit_environment, run_cli
from tests.support.server import serve_app
from tests.support.ws import next_status, open_socket

pytestmark = pytest.mark.e2e

LIVE_MS = 10_000
# A silence of 2 s is a stall; the hub's sweeper finds it within a second more. The rest is margin
# for a busy machine.
STALL_AFTER = 2
STALL_MS = 15_000
TICK_MS = 5_000  # the page's clock ticks every second
# The owner's median of a step needs this many provisionings that completed it.
SAMPLES = 5
DURATION = r"(under 1 s|\d+ s|\d+ min( \d+ s)?)"
WORKFLOW_KEYS = ("queued", "creating_server", "installing_dependencies", "configuring_agent", "running")
DEMO_SECONDS = 120  # the demo's own pace: a minute for both, and a wide margin on top


@pytest.fixture(scope="module")
async def quick_hub(settings: Settings) -> AsyncIterator[str]:
    """The hub under test with stall limits of seconds; one per module, so no other test's agents stall."""
    quick = dataclasses.replace(settings, stall_after=STALL_AFTER, heartbeat_timeout=STALL_AFTER, fail_after=3600)
    async with serve_app(create_app(quick)) as url:
        yield url


@pytest.fixture
async def api(quick_hub: str, clean_db: AsyncEngine) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=quick_hub, timeout=10.0) as client:
        yield Api(client)


def step(page: Page, agent_id: str, key: str) -> Locator:
    return card(page, agent_id).locator(f'[data-step="{key}"]')


async def send(api: Api, job_id: str, *bodies: dict[str, Any]) -> int:
    """Send callbacks in order; the version the last one produced."""
    version = 0
    for body in bodies:
        reply = await api.callback({"job_id": job_id, **body})
        assert reply.status_code == 200, reply.text
        version = reply.json()["version"]
    return version


async def completed_runs(api: Api, owner: str, count: int) -> list[str]:
    """``count`` agents of ``owner`` provisioned all the way to running: the history the owner's
    usual step times come from."""
    agent_ids = []
    for index in range(count):
        agent = await api.create_agent(owner, name=f"done-{index}")
        job_id = (await api.provision(agent["id"]))["jobId"]
        await send(api, job_id, *(body for body, _ in WORKFLOW))
        agent_ids.append(agent["id"])
    return agent_ids


async def test_completed_steps_show_their_durations_and_the_active_step_ticks(
    page: Page, api: Api, quick_hub: str, owner: str
) -> None:
    agent_id, job_id = await api.new_job(owner)
    await send(api, job_id, *(body for body, _ in WORKFLOW[:4]))  # provisioning .. ansible_started
    await open_dashboard(page, quick_hub, token_for(owner))
    await expect_states(page, agent_id, WORKFLOW[3][1], LIVE_MS)

    for key in ("queued", "creating_server", "installing_dependencies"):
        took = step(page, agent_id, key).locator(".step-time")
        await expect(took).to_be_visible()
        await expect(took).to_have_text(re.compile(f"^{DURATION}$"))
        await expect(took).to_have_attribute("title", re.compile(r"^Took "))
    # The active step counts up from when it started (no usual time yet: the owner has no history).
    clock = step(page, agent_id, "configuring_agent").locator(".step-time")
    await expect(clock).to_have_text(re.compile(f"^{DURATION}$"))
    await expect(clock).to_have_text(re.compile(r"^[1-9]\d* s$"), timeout=TICK_MS)
    shown = await clock.text_content()
    await expect(clock).not_to_have_text(shown or "", timeout=TICK_MS)
    for key in ("running",):
        await expect(step(page, agent_id, key).locator(".step-time")).to_be_hidden()

    # Straight to running from Ansible: the step the workflow never reported is shown skipped.
    await send(api, job_id, {"status": "running", "metadata": {"ip_address": "10.0.0.9"}})
    await expect_states(page, agent_id, ("completed",) * 5, LIVE_MS)
    await expect(step(page, agent_id, "running").locator(".step-time")).to_have_text("skipped", timeout=LIVE_MS)
    await expect(step(page, agent_id, "configuring_agent").locator(".step-time")).to_have_text(
        re.compile(f"^{DURATION}$")
    )


async def test_a_browser_whose_clock_is_an_hour_ahead_still_shows_true_times(
    page: Page, api: Api, quick_hub: str, owner: str
) -> None:
    # On the browser's own clock every step would have been running for an hour, every silence too.
    await page.clock.set_system_time(datetime.now(UTC) + timedelta(hours=1))
    agent_id, job_id = await api.new_job(owner)
    await send(api, job_id, *(body for body, _ in WORKFLOW[:2]))  # Installing Dependencies is active
    await open_dashboard(page, quick_hub, token_for(owner))
    await expect_states(page, agent_id, WORKFLOW[1][1], LIVE_MS)
    assert await page.evaluate("Date.now()") - time.time() * 1000 > 3_500_000, "The browser's clock is not ahead."

    await expect(step(page, agent_id, "installing_dependencies").locator(".step-time")).to_have_text(
        re.compile(r"^\d+ s$")
    )
    notice = card(page, agent_id).locator(".stall")
    await expect(notice).to_be_visible(timeout=STALL_MS)
    await expect(notice.locator(".stall-text")).to_have_text(re.compile(r"^No word from the workflow for \d+ s\.$"))


async def test_a_step_the_failure_ended_shows_when_it_started_not_a_duration(
    page: Page, api: Api, quick_hub: str, owner: str
) -> None:
    agent_id, job_id = await api.new_job(owner)
    # At Creating Server, then failed without a step (as a workflow presumed lost is): the hub shows
    # Creating Server completed and Installing Dependencies failed, both at the failure's instant.
    await send(api, job_id, WORKFLOW[0][0], {"status": "failed", "error": "The runner was lost."})
    await open_dashboard(page, quick_hub, token_for(owner))
    await expect_states(page, agent_id, ("completed", "completed", "error", "pending", "pending"), LIVE_MS)

    cut_short = step(page, agent_id, "creating_server").locator(".step-time")
    await expect(cut_short).to_have_text(re.compile(rf"^started {DURATION} before the failure$"))
    await expect(cut_short).to_have_attribute("title", re.compile(r"^The workflow reported no end for this step"))
    await expect(step(page, agent_id, "queued").locator(".step-time")).to_have_text(re.compile(f"^{DURATION}$"))
    await expect(step(page, agent_id, "installing_dependencies").locator(".step-time")).to_be_hidden()
    await expect(step(page, agent_id, "installing_dependencies")).to_contain_text("The runner was lost.")


async def test_the_usual_time_shows_after_five_provisionings_and_a_slow_step_says_so(
    page: Page, api: Api, quick_hub: str, owner: str
) -> None:
    await completed_runs(api, owner, SAMPLES)
    agent_id, job_id = await api.new_job(owner)
    await send(api, job_id, *(body for body, _ in WORKFLOW[:2]))  # provisioning, vm_created
    await open_dashboard(page, quick_hub, token_for(owner))
    await expect_states(page, agent_id, WORKFLOW[1][1], LIVE_MS)

    # The history's steps each took milliseconds, so a second of this one is slower than usual.
    active = step(page, agent_id, "installing_dependencies")
    await expect(active.locator(".step-time")).to_have_text(
        re.compile(f"^{DURATION}, usually (under 1 s|about {DURATION})$")
    )
    await expect(active.locator(".step-slow")).to_have_text("slower than usual")
    await expect(active.locator(".step-slow")).to_be_visible()
    await expect(active).to_have_attribute("data-slow", "")
    await expect(step(page, agent_id, "creating_server").locator(".step-time")).to_have_attribute(
        "title", re.compile(r"^Took .*\(usually ")
    )
    # Pending steps say nothing about time, and nothing there is slow.
    await expect(step(page, agent_id, "configuring_agent").locator(".step-time")).to_be_hidden()
    await expect(step(page, agent_id, "configuring_agent").locator(".step-slow")).to_be_hidden()


def active(started: float | None, expected: float | None) -> dict[str, Any]:
    return {"state": "active", "startedAgo": started, "completedAgo": None, "expectedSeconds": expected}


def ended(state: str, started: float | None, completed: float | None, expected: float | None = 10) -> dict[str, Any]:
    return {"state": state, "startedAgo": started, "completedAgo": completed, "expectedSeconds": expected}


# (function of durations.js, its arguments, what it says). For stepTiming, a step given by how many
# seconds ago it started and completed, after a completed step that ended "previousEndedAgo" (null:
# none) and, when a third argument is given, before that step, answered as "text|slow"; for
# silenceText, seconds of silence.
WORDING: list[tuple[str, list[Any], str]] = [
    ("formatDuration", [0], "0 s"),
    ("formatDuration", [59.9], "59 s"),
    ("formatDuration", [130], "2 min 10 s"),
    ("formatDuration", [120], "2 min"),
    ("formatDuration", [3900], "1 h 5 min"),
    ("formatUsual", [0.2], "usually under 1 s"),
    ("formatUsual", [100], "usually about 1 min 40 s"),
    ("formatUsual", [97], "usually about 1 min 40 s"),
    ("formatUsual", [44.6], "usually about 45 s"),
    ("formatUsual", [1000], "usually about 17 min"),
    ("stepTiming", [active(130, 100), None], "2 min 10 s, usually about 1 min 40 s|"),
    ("stepTiming", [active(151, 100), None], "2 min 31 s, usually about 1 min 40 s|slow"),
    ("stepTiming", [active(151, None), None], "2 min 31 s|"),
    ("stepTiming", [active(None, None), 42], "42 s|"),
    ("stepTiming", [active(None, None), None], "null"),
    ("stepTiming", [active(-5, None), None], "0 s|"),
    ("stepTiming", [ended("completed", 100, 0), None], "1 min 40 s|"),
    ("stepTiming", [ended("completed", 9, 9), None], "skipped|"),
    ("stepTiming", [ended("completed", 9, 8.6), None], "under 1 s|"),
    ("stepTiming", [ended("error", 75, 0), None], "failed after 1 min 15 s|"),
    ("stepTiming", [ended("error", 3, 3), None], "null"),
    # Failed without a step while at Creating Server: the hub completes Creating Server at the failure
    # and fails Installing Dependencies at that same instant. Creating Server never said it finished.
    ("stepTiming", [ended("completed", 3600, 0), None, ended("error", 0, 0)], "started 1 h before the failure|"),
    ("stepTiming", [ended("completed", 150, 0), None, ended("error", 0, 0)], "started 2 min 30 s before the failure|"),
    ("stepTiming", [ended("completed", 0.4, 0), None, ended("error", 0, 0)], "started under 1 s before the failure|"),
    ("stepTiming", [ended("completed", 5, 5), None, ended("error", 5, 5)], "skipped|"),
    # A step that ended before the failure took what it took; and a pending step after it changes nothing.
    ("stepTiming", [ended("completed", 100, 30), None, ended("error", 30, 0)], "1 min 10 s|"),
    ("stepTiming", [ended("completed", 100, 0), None, ended("pending", None, None)], "1 min 40 s|"),
    ("stepTiming", [ended("pending", None, None), None], "null"),
    ("silenceText", ["provisioning", 372], "No word from the workflow for 6 min 12 s."),
    ("silenceText", ["pending", 59], "No word from the workflow for 59 s."),
    ("silenceText", ["running", 45], "No heartbeat from the agent for 45 s."),
    ("parseTime", ["2026-12-02T06:01:02.123456Z"], "1796191262123"),
    ("parseTime", ["not a time"], "null"),
]


@pytest.mark.parametrize(
    ("function", "arguments", "expected"), WORDING, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(WORDING)]
)
async def test_the_wording_of_durations(
    page: Page, quick_hub: str, function: str, arguments: list[Any], expected: str
) -> None:
    """durations.js on its own, in the browser that runs it, under the page's own CSP."""
    await page.goto(quick_hub)
    said = await page.evaluate(
        """async ([name, args]) => {
            const durations = await import("/static/durations.js");
            const now = Date.parse("2026-12-02T06:00:00Z");
            const ago = (seconds) => (seconds === null ? null : new Date(now - seconds * 1000).toISOString());
            if (name === "stepTiming") {
                const [step, previousEndedAgo, following] = args;
                const asStep = (s) => ({ state: s.state, startedAt: ago(s.startedAgo),
                    completedAt: ago(s.completedAgo), expectedSeconds: s.expectedSeconds });
                const steps = [
                    { state: "completed", completedAt: ago(previousEndedAgo) },
                    asStep(step),
                    ...(following ? [asStep(following)] : []),
                ];
                const found = durations.stepTiming(steps, 1, now);
                return found === null ? "null" : `${found.text}|${found.slow ? "slow" : ""}`;
            }
            if (name === "silenceText") return durations.silenceText(args[0], now - args[1] * 1000, now);
            return String(durations[name](...args));
        }""",
        [function, arguments],
    )
    assert said == expected


async def test_a_silent_workflow_shows_stalled_live_and_a_callback_clears_it(
    page: Page, api: Api, quick_hub: str, owner: str
) -> None:
    agent_id, job_id = await api.new_job(owner)
    await open_dashboard(page, quick_hub, token_for(owner))
    await expect(badge(page)).to_have_attribute("data-connection", "live", timeout=LIVE_MS)
    await send(api, job_id, *(body for body, _ in WORKFLOW[:2]))  # then nothing

    agent = card(page, agent_id)
    notice = agent.locator(".stall")
    await expect(notice).to_be_visible(timeout=STALL_MS)
    await expect(agent).to_have_attribute("data-stalled", "")
    await expect(notice).to_contain_text("Stalled")
    silence = notice.locator(".stall-text")
    await expect(silence).to_have_text(re.compile(r"^No word from the workflow for \d+ s\.$"))
    shown = await silence.text_content()
    await expect(silence).not_to_have_text(shown or "", timeout=TICK_MS)  # it ticks
    await expect(agent.locator(".announce")).to_contain_text("Stalled: no word from the workflow since")
    await expect_states(page, agent_id, WORKFLOW[1][1], LIVE_MS)  # still where it stopped

    # The workflow speaks again (and finishes: a running agent that never heartbeated cannot stall).
    version = await send(api, job_id, {"status": "running", "metadata": {"ip_address": "10.0.0.7"}})
    await expect(agent.locator(".version")).to_have_text(f"v{version}", timeout=LIVE_MS)
    await expect(notice).to_be_hidden()
    await expect(agent).not_to_have_attribute("data-stalled", "")
    await expect(agent.locator(".announce")).to_have_text("The workflow is reporting again.")

    # A running agent whose heartbeats stop is stalled too, and the next heartbeat clears it.
    await api.heartbeat(job_id)
    await expect(notice).to_be_visible(timeout=STALL_MS)
    await expect(silence).to_have_text(re.compile(r"^No heartbeat from the agent for \d+ s\.$"))
    await expect(agent.locator(".stall-hint")).to_contain_text("agent may be down")
    # Cleared until the next silence, 2 s later: the page must show the heartbeat's version unstalled.
    await api.heartbeat(job_id)
    await expect(notice).to_be_hidden(timeout=LIVE_MS)


async def test_only_stalls_and_resumes_while_the_page_is_open_are_announced(
    page: Page, api: Api, quick_hub: str, owner: str
) -> None:
    jobs = [await api.new_job(owner) for _ in range(2)]
    await open_dashboard(page, quick_hub, token_for(owner))
    await expect(badge(page)).to_have_attribute("data-connection", "live", timeout=LIVE_MS)
    for _, job_id in jobs:
        await send(api, job_id, *(body for body, _ in WORKFLOW[:2]))  # then nothing
    for agent_id, _ in jobs:
        await expect(card(page, agent_id).locator(".stall")).to_be_visible(timeout=STALL_MS)
        await expect(card(page, agent_id).locator(".announce")).to_contain_text("Stalled: no word from the workflow")

    # Loaded with both already stalled: shown, but the live regions stay quiet.
    await page.reload()
    await expect(badge(page)).to_have_attribute("data-connection", "live", timeout=LIVE_MS)
    for agent_id, _ in jobs:
        await expect(card(page, agent_id).locator(".stall")).to_be_visible(timeout=LIVE_MS)
        await expect(card(page, agent_id)).to_have_attribute("data-stalled", "")
        await expect(card(page, agent_id).locator(".announce")).to_have_text("")

    # What changes after that is said: the workflow resumes (running, and no heartbeat yet, so it
    # stays unstalled), then the agent's heartbeats stop.
    (agent_id, job_id), (quiet_id, _) = jobs
    announce = card(page, agent_id).locator(".announce")
    await send(api, job_id, {"status": "running", "metadata": {"ip_address": "10.0.0.8"}})
    await expect(announce).to_have_text("The workflow is reporting again.", timeout=LIVE_MS)
    await api.heartbeat(job_id)
    await expect(announce).to_contain_text("Stalled: no heartbeat from the agent since", timeout=STALL_MS)
    await expect(card(page, quiet_id).locator(".announce")).to_have_text("")


async def test_the_timeline_opens_and_pages_through_the_agents_events(
    page: Page, api: Api, quick_hub: str, owner: str
) -> None:
    agent = await api.create_agent(owner, name="timeline-agent")
    agent_id = agent["id"]
    token = token_for(owner)
    await open_dashboard(page, quick_hub, token)
    await expect(badge(page)).to_have_attribute("data-connection", "live", timeout=LIVE_MS)
    # The first run goes quiet after vm_created until the page shows it stalled, then finishes.
    job_id = (await api.provision(agent_id))["jobId"]
    await send(api, job_id, *(body for body, _ in WORKFLOW[:2]))
    await expect(card(page, agent_id).locator(".stall")).to_be_visible(timeout=STALL_MS)
    await send(api, job_id, *(body for body, _ in WORKFLOW[2:]))
    # Four more whole runs: more events than the dialog's first page holds.
    for _ in range(4):
        job_id = (await api.provision(agent_id))["jobId"]
        await send(api, job_id, *(body for body, _ in WORKFLOW))
    await expect_states(page, agent_id, ("completed",) * 5, LIVE_MS)
    await expect(card(page, agent_id).locator(".stall")).to_be_hidden()

    expected = await history(api, agent_id, token)
    assert len(expected) > 25, f"Expected more events than one page of the dialog; got {len(expected)}."

    opener = card(page, agent_id).get_by_role("button", name="Timeline of timeline-agent")
    await opener.click()
    dialog = page.get_by_role("dialog", name="Timeline")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("timeline-agent")
    events = dialog.locator("li.event")
    older = dialog.get_by_role("button", name="Load older events")
    await expect(events).to_have_count(25, timeout=LIVE_MS)
    await expect(events.first).to_have_attribute("data-event-id", expected[0]["id"])
    await expect(older).to_be_visible()
    await load_every_page(dialog)
    assert await shown_ids(dialog) == [e["id"] for e in expected]
    await expect(dialog.locator('li.event[data-kind="stalled"]')).to_have_count(1)
    await expect(dialog.locator('li.event[data-kind="stalled"] .event-kind')).to_have_text("Stalled")
    await expect(dialog.locator('li.event[data-kind="resumed"]')).to_have_count(1)
    newest = events.first
    await expect(newest.locator(".event-kind")).to_have_text("Callback")
    await expect(newest.locator(".event-status")).to_have_text("running")
    await expect(newest.locator(".event-meta")).to_contain_text(f"applied · v{expected[0]['version']}")
    await expect(dialog.locator(".timeline-state")).to_contain_text("that is all of them")

    # Escape closes it and gives the focus back to the card's button.
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(opener).to_be_focused()


async def history(api: Api, agent_id: str, token: str) -> list[dict[str, Any]]:
    """What the hub holds of the agent's history, newest first, every page of it."""
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        reply = await api.client.get(
            f"/api/agents/{agent_id}/events",
            params={"limit": 200, **({"before": cursor} if cursor else {})},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert reply.status_code == 200, reply.text
        events += reply.json()["events"]
        if (cursor := reply.json()["next"]) is None:
            return events


async def load_every_page(dialog: Locator) -> None:
    """Click "Load older events" until the dialog shows every event."""
    events = dialog.locator("li.event")
    older = dialog.get_by_role("button", name="Load older events")
    while await older.is_visible():
        shown = await events.count()
        await older.click()
        await expect(events).not_to_have_count(shown, timeout=LIVE_MS)
    await expect(dialog.locator(".timeline-state")).to_contain_text("that is all of them")


async def shown_ids(dialog: Locator) -> list[str | None]:
    return [await item.get_attribute("data-event-id") for item in await dialog.locator("li.event").all()]


async def test_an_open_timeline_adds_what_happens_while_it_is_open(
    page: Page, api: Api, quick_hub: str, owner: str
) -> None:
    agent = await api.create_agent(owner, name="live-history")
    agent_id = agent["id"]
    token = token_for(owner)
    job_id = (await api.provision(agent_id))["jobId"]
    await send(api, job_id, WORKFLOW[0][0])
    await open_dashboard(page, quick_hub, token)
    await expect(badge(page)).to_have_attribute("data-connection", "live", timeout=LIVE_MS)
    await card(page, agent_id).get_by_role("button", name="Timeline of live-history").click()
    dialog = page.get_by_role("dialog", name="Timeline")
    events = dialog.locator("li.event")
    state = dialog.locator(".timeline-state")
    await expect(events).to_have_count(len(await history(api, agent_id, token)), timeout=LIVE_MS)

    # A callback while it is open: its event goes on top, and the count says so.
    await send(api, job_id, WORKFLOW[1][0])
    expected = await history(api, agent_id, token)
    await expect(events.first).to_have_attribute("data-event-id", expected[0]["id"], timeout=LIVE_MS)
    await expect(state).to_contain_text("1 new event")
    assert await shown_ids(dialog) == [e["id"] for e in expected]
    # So does the stall watch's change when the workflow goes quiet.
    await expect(events.first).to_have_attribute("data-kind", "stalled", timeout=STALL_MS)

    # More than a page happens while the dialog's look for news is held up: the list starts over from
    # the newest page and pages on from there, every event once, none missing.
    held = asyncio.Event()

    async def hold(route: Route) -> None:
        await held.wait()
        await route.continue_()

    await page.route(re.compile(rf"/api/agents/{agent_id}/events(\?|$)"), hold)
    await send(api, job_id, *(body for body, _ in WORKFLOW[1:]))
    for _ in range(4):
        job_id = (await api.provision(agent_id))["jobId"]
        await send(api, job_id, *(body for body, _ in WORKFLOW))
    await expect_states(page, agent_id, ("completed",) * 5, LIVE_MS)
    expected = await history(api, agent_id, token)
    assert len(expected) > 25 + len(await shown_ids(dialog)), "Expected more news than one page holds."
    held.set()
    await expect(events.first).to_have_attribute("data-event-id", expected[0]["id"], timeout=LIVE_MS)
    await expect(events).to_have_count(25)
    await load_every_page(dialog)
    assert await shown_ids(dialog) == [e["id"] for e in expected]


@pytest.mark.parametrize("refused", ["first page", "news while open"])
async def test_a_refused_token_closes_the_timeline_and_the_page_says_so(
    page: Page, api: Api, quick_hub: str, owner: str, refused: str
) -> None:
    agent = await api.create_agent(owner, name="refused-history")
    agent_id = agent["id"]
    job_id = (await api.provision(agent_id))["jobId"]
    answered: list[str] = []

    async def refuse(route: Route) -> None:
        answered.append(route.request.url)
        if refused == "first page" or len(answered) > 1:
            await route.fulfill(status=401, json={"detail": "The token was revoked."})
        else:
            await route.continue_()

    await page.route(re.compile(rf"/api/agents/{agent_id}/events(\?|$)"), refuse)
    await open_dashboard(page, quick_hub, token_for(owner))
    await expect(badge(page)).to_have_attribute("data-connection", "live", timeout=LIVE_MS)
    await card(page, agent_id).get_by_role("button", name="Timeline of refused-history").click()
    dialog = page.get_by_role("dialog", name="Timeline")
    if refused == "news while open":
        await expect(dialog.locator(".timeline-state")).to_contain_text("No events yet", timeout=LIVE_MS)
        await send(api, job_id, WORKFLOW[0][0])
    await expect(dialog).to_be_hidden(timeout=LIVE_MS)
    notice = page.locator("#notice")
    await expect(notice).to_be_visible()
    await expect(notice).to_contain_text("This dashboard link is not valid")
    await expect(notice).to_contain_text("The token was revoked.")


@pytest.mark.parametrize(
    ("failure", "says"),
    [
        ("network", ("Could not reach the hub to load the timeline.", "Could not reach the hub to load older events.")),
        ("503", ("HTTP 503: The history is unavailable for a moment.",) * 2),
    ],
    ids=["network-error", "http-503"],
)
async def test_a_page_of_the_timeline_that_failed_can_be_asked_for_again(
    page: Page, api: Api, quick_hub: str, owner: str, failure: str, says: tuple[str, str]
) -> None:
    agent = await api.create_agent(owner, name="flaky-history")
    agent_id = agent["id"]
    for _ in range(5):  # more events than the dialog's first page holds
        job_id = (await api.provision(agent_id))["jobId"]
        await send(api, job_id, *(body for body, _ in WORKFLOW))
    # The first request for the first page fails, and later the first request for an older page.
    failed: list[str] = []

    async def fail_once(route: Route) -> None:
        kind = "older" if "before=" in route.request.url else "first"
        if kind in failed:
            await route.continue_()
            return
        failed.append(kind)
        if failure == "network":
            await route.abort("connectionrefused")
        else:
            await route.fulfill(status=503, json={"detail": "The history is unavailable for a moment."})

    await page.route(re.compile(rf"/api/agents/{agent_id}/events(\?|$)"), fail_once)
    await open_dashboard(page, quick_hub, token_for(owner))
    await card(page, agent_id).get_by_role("button", name="Timeline of flaky-history").click()
    dialog = page.get_by_role("dialog", name="Timeline")
    state = dialog.locator(".timeline-state")
    events = dialog.locator("li.event")
    retry = dialog.get_by_role("button", name="Try again")
    older = dialog.get_by_role("button", name="Load older events")

    await expect(state).to_contain_text(says[0], timeout=LIVE_MS)
    await expect(state).to_have_attribute("data-error", "true")
    await expect(events).to_have_count(0)
    await expect(older).to_be_hidden()
    await retry.click()
    await expect(events).to_have_count(25, timeout=LIVE_MS)
    await expect(state).not_to_have_attribute("data-error", "true")
    await expect(retry).to_be_hidden()
    await expect(older).to_be_focused()  # the focus stays in the dialog, on what comes next

    await older.click()
    await expect(state).to_contain_text(says[1], timeout=LIVE_MS)
    await expect(state).to_have_attribute("data-error", "true")
    await expect(events).to_have_count(25)
    await expect(retry).to_be_hidden()
    await expect(older).to_be_enabled()
    await older.click()
    await expect(events).not_to_have_count(25, timeout=LIVE_MS)
    await expect(state).not_to_have_attribute("data-error", "true")
    assert failed == ["first", "older"]


async def test_simulate_stop_after_leaves_the_agent_stalled(api: Api, quick_hub: str, owner: str) -> None:
    agent_id, job_id = await api.new_job(owner)
    async with open_socket(quick_hub, f"/api/agents/{agent_id}/instance/ws", owner=owner) as ws:
        assert (await next_status(ws))["version"] == 1
        code, out, err = await run_cli(
            "simulate", "--url", quick_hub, "--job", job_id, "--stop-after", "vm_created", "--delay", "0",
            env=kit_environment(),
        )  # fmt: skip
        assert code == 0, err
        assert [line.split()[0] for line in out.splitlines()] == ["provisioning", "vm_created"]
        assert "stopped after vm_created on purpose" in err
        # Statuses until the hub says the workflow went quiet after vm_created (the queued agent may be
        # stalled already while the command starts: 2 s is short); nothing later ever arrives.
        async with asyncio.timeout(STALL_MS / 1000):
            while True:
                status = await next_status(ws, timeout=STALL_MS / 1000)
                assert status["currentStep"] in (None, "vm_created"), json.dumps(status)
                if status["currentStep"] == "vm_created" and status["stalledSince"] is not None:
                    break
    assert (status["status"], status["currentStep"]) == ("provisioning", "vm_created")
    assert [s["state"] for s in status["steps"]] == list(WORKFLOW[1][1])


async def test_screenshot_of_durations_and_a_stalled_agent(page: Page, api: Api, quick_hub: str, owner: str) -> None:
    """Not an assertion on pixels: a picture for people to look at (git-ignored)."""
    done = await completed_runs(api, owner, SAMPLES)
    agents: dict[str, tuple[str, str]] = {}
    for name in ("configuring-agent", "stalled-workflow"):
        agent = await api.create_agent(owner, name=name)
        agents[name] = (agent["id"], (await api.provision(agent["id"]))["jobId"])
    await send(api, agents["stalled-workflow"][1], *(body for body, _ in WORKFLOW[:2]))
    await open_dashboard(page, quick_hub, token_for(owner))
    await expect(card(page, agents["stalled-workflow"][0]).locator(".stall")).to_be_visible(timeout=STALL_MS)
    await send(api, agents["configuring-agent"][1], *(body for body, _ in WORKFLOW[:4]))
    await expect(step(page, agents["configuring-agent"][0], "configuring_agent").locator(".step-slow")).to_be_visible(
        timeout=LIVE_MS
    )
    await expect(step(page, done[0], "running").locator(".step-time")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "timeline.png", full_page=True, animations="disabled")
    assert (ARTIFACTS / "timeline.png").stat().st_size > 10_000


@pytest.mark.timeout(DEMO_SECONDS + 60)
async def test_the_demo_shows_a_stalled_agent_and_usual_step_times(tmp_path: Path) -> None:
    """`status-hub demo` after its first runs: one agent stalled, and steps with the owner's usual time."""
    async with demo_process(tmp_path) as demo:
        auth = {"Authorization": f"Bearer {demo.token}"}
        async with httpx.AsyncClient(base_url=demo.base, timeout=10.0) as client:
            agents = (await client.get("/api/agents", headers=auth)).json()
        quiet = next(agent["id"] for agent in agents if agent["name"] == "gpu-worker")
        quiet_stalled = False
        usual: set[str] = set()  # the steps shown with a usual time
        async with open_socket(demo.base, "/api/ws", owner=None, headers=auth) as ws:
            await ws.send(json.dumps({"type": "subscribe", "agentIds": [agent["id"] for agent in agents]}))
            # The quiet agent stops after about 10 s and is stalled 20 s later; the usual times need
            # five runs of a step, which the first round's back-to-back runs give within about a minute.
            async with asyncio.timeout(DEMO_SECONDS):
                while not (quiet_stalled and len(usual) == len(WORKFLOW_KEYS)):
                    status = await next_status(ws, timeout=DEMO_SECONDS)
                    if status["agentId"] == quiet and status["stalledSince"] is not None:
                        quiet_stalled = True
                        assert status["currentStep"] == "ansible_started", json.dumps(status)
                    usual |= {step["key"] for step in status["steps"] if step["expectedSeconds"] is not None}
    assert demo.process.returncode == 0, "".join(demo.printed) + demo.rest
