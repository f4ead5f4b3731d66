"""The poll cache: current polls answered from memory, kept honest by the channel and the reconcile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.live.reconcile import reconcile_once
from hub.runtime import Hub
from hub.settings import Settings
from tests.support.api import Api
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
