"""The poll cache: current polls answered from memory, kept honest by the channel and the reconcile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.domain.tokens import COOKIE_NAME, Viewer
from hub.http import agents
from hub.live.reconcile import reconcile_once
from hub.runtime import Hub
from hub.settings import Settings
from tests.support.api import Api, token_for
from tests.support.live import LiveHub, live_hub
from tests.support.waiting import wait_until


@pytest.fixture
async def live(settings: Settings, clean_db: AsyncEngine) -> AsyncIterator[LiveHub]:
    # No reconcile on its own timer here: each test runs the reconcile itself when it means to.
    async with live_hub(settings, reconcile_interval=3600) as running:
        yield running


async def _watched(hub: Hub, api: Api, agent_id: str) -> str:
    """Poll once, wait until the cache trusts the agent; the poll's ETag."""
    tag = (await api.status(agent_id)).headers["ETag"]
    await wait_until(lambda: hub.versions.current(agent_id) is not None, what="the agent to be watched")
    return tag


async def test_a_lost_publish_is_repaired_in_the_cache_by_the_reconcile(live: LiveHub, clean_db: AsyncEngine) -> None:
    _, hub, api = live
    agent_id, _ = await api.new_job()
    tag = await _watched(hub, api, agent_id)
    async with clean_db.begin() as connection:  # committed, announced nowhere
        await connection.execute(
            text("UPDATE agent_instances SET version = version + 1 WHERE agent_id = :agent"), {"agent": agent_id}
        )
    assert (await api.status(agent_id, etag=tag)).status_code == 304  # stale until the reconcile
    assert await reconcile_once(hub) >= 1
    fresh = await api.status(agent_id, etag=tag)
    assert fresh.status_code == 200 and fresh.json()["version"] == 2


async def test_another_owner_is_refused_from_the_cache_too(live: LiveHub) -> None:
    _, hub, api = live
    agent_id, _ = await api.new_job("owner-1")
    tag = await _watched(hub, api, agent_id)
    refused = await api.status(agent_id, owner_id="owner-2", etag=tag)
    assert refused.status_code == 403


async def test_an_agent_no_longer_polled_is_released_with_its_subscription(live: LiveHub) -> None:
    _, hub, api = live
    agent_id, _ = await api.new_job()
    await _watched(hub, api, agent_id)
    assert hub.channel(agent_id) in hub.broker.channels
    loop = asyncio.get_running_loop()
    assert await hub.versions.release_idle(loop.time() + 3600) >= 1
    assert len(hub.versions) == 0
    assert hub.channel(agent_id) not in hub.broker.channels
    await _watched(hub, api, agent_id)  # polled again: watched again


async def test_a_current_poll_is_answered_before_the_handler_with_the_handlers_headers(
    live: LiveHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, hub, api = live
    agent_id, _ = await api.new_job()
    tag = await _watched(hub, api, agent_id)
    handled: list[str] = []
    request_viewer = agents.request_viewer

    def counted(request: Request[Any, Any, Any], running: Hub) -> Viewer:
        handled.append(request.url.path)
        return request_viewer(request, running)

    monkeypatch.setattr(agents, "request_viewer", counted)
    early = await api.status(agent_id, etag=tag)  # a bearer token: answered before the handler
    assert early.status_code == 304 and handled == []
    # The cookie is left to the handler: its 304 is the reference.
    api.client.cookies.set(COOKIE_NAME, token_for("owner-1"))
    try:
        handler = await api.client.get(f"/api/agents/{agent_id}/instance", headers={"If-None-Match": tag})
    finally:
        api.client.cookies.clear()
    assert handler.status_code == 304 and len(handled) == 1

    def sent(response: httpx.Response) -> list[tuple[str, str]]:
        return [(name, value) for name, value in response.headers.multi_items() if name != "date"]  # the clock's

    assert sent(early) == sent(handler)
    assert early.content == handler.content == b""
