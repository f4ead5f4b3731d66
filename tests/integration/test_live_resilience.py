"""Slow clients, connection churn and a Redis outage: nothing blocks, leaks or is lost."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.app import create_app
from hub.runtime import Hub
from hub.settings import Settings
from tests.support.api import Api, token_for
from tests.support.live import LiveHub, live_hub
from tests.support.rawws import RawSocket
from tests.support.redis_server import RedisServer
from tests.support.server import serve_app
from tests.support.waiting import wait_until
from tests.support.ws import next_status, open_socket, until_version


@pytest.fixture
async def live(settings: Settings, clean_db: AsyncEngine) -> AsyncIterator[LiveHub]:
    async with live_hub(settings, send_timeout=0.5) as running:
        yield running


async def test_a_client_that_stops_reading_slows_no_one_and_holds_one_frame(live: LiveHub) -> None:
    base, hub, api = live
    agent_id, job_id = await api.new_job()
    # Large statuses (just under the 16 KiB metadata bound) fill the stalled client's buffers quickly.
    reply = await api.callback({"job_id": job_id, "status": "running", "metadata": {"notes": "x" * 16_000}})
    assert reply.status_code == 200, reply.text
    port = urlsplit(base).port
    assert port is not None
    stalled = RawSocket(port, f"/api/agents/{agent_id}/instance/ws", token_for("owner-1"))
    await stalled.open()
    try:
        async with open_socket(base, f"/api/agents/{agent_id}/instance/ws", max_size=2**20) as fast:
            await next_status(fast)
            await wait_until(lambda: hub.broker.subscriber_count(hub.channel(agent_id)) == 2, what="both subscribed")
            max_pending = 0
            gate = asyncio.Semaphore(16)

            async def beat() -> int:
                nonlocal max_pending
                async with gate:
                    version = await api.heartbeat(job_id)
                max_pending = max(max_pending, *(s.pending_count for s in hub.sockets))
                return version

            fast_seen: list[int] = []

            async def read_fast() -> None:
                while True:
                    fast_seen.append((await next_status(fast, timeout=60))["version"])

            reader = asyncio.create_task(read_fast())
            latest = max(await asyncio.gather(*(beat() for _ in range(1000))))
            # The fast client gets current although the stalled one has read nothing at all...
            await wait_until(lambda: bool(fast_seen) and fast_seen[-1] == latest, what="the fast client to be current")
            reader.cancel()
            assert fast_seen == sorted(set(fast_seen))
            # ...and the stalled one never held more than one unsent status.
            assert max_pending <= 1
            await wait_until(lambda: hub.metrics.slow_socket_closes >= 1, what="the stalled socket to be closed")
        # Reading again within the close grace, it gets what was buffered, then the close code.
        frames, code = await stalled.drain()
    finally:
        stalled.close()
    versions = [frame["data"]["version"] for frame in frames if frame["type"] == "status"]
    assert versions == sorted(set(versions)), "versions must strictly rise"
    assert code == 4408
    assert versions[-1] < latest


async def test_connection_churn_leaves_no_channel_task_or_subscriber(live: LiveHub, settings: Settings) -> None:
    base, hub, api = live
    agents = [await api.new_job() for _ in range(5)]
    port = urlsplit(base).port
    assert port is not None
    baseline_tasks = len(asyncio.all_tasks())
    rng = random.Random(7)
    token = token_for("owner-1")

    async def cycle(index: int) -> None:
        agent_id = agents[index % len(agents)][0]
        kind = rng.choice(["read", "close", "abort", "abort-handshake", "multiplexed"])
        if kind == "read":
            async with open_socket(base, f"/api/agents/{agent_id}/instance/ws") as ws:
                await next_status(ws)
        elif kind == "close":
            async with open_socket(base, f"/api/agents/{agent_id}/instance/ws"):
                pass  # closes while the server may still be subscribing
        elif kind == "multiplexed":
            async with open_socket(base, "/api/ws") as ws:
                await ws.send(json.dumps({"type": "subscribe", "agentIds": [a for a, _ in agents]}))
        else:
            raw = RawSocket(port, f"/api/agents/{agent_id}/instance/ws", token)
            await raw.open(wait_for_upgrade=kind == "abort")
            raw.abort()  # a reset mid-subscribe (or mid-handshake)

    semaphore = asyncio.Semaphore(25)

    async def bounded(index: int) -> None:
        async with semaphore:
            await cycle(index)

    await asyncio.wait_for(asyncio.gather(*(bounded(i) for i in range(1000))), timeout=110)
    await wait_until(lambda: not hub.sockets, timeout=20, what="every socket to be released")
    await wait_until(lambda: not hub.agent_channels, timeout=20, what="every channel to be unsubscribed")
    await wait_until(lambda: len(asyncio.all_tasks()) <= baseline_tasks, timeout=20, what="socket tasks to finish")
    client = aioredis.Redis.from_url(settings.redis_url or "")
    try:
        counts = await client.pubsub_numsub(*(hub.channel(agent_id) for agent_id, _ in agents))
    finally:
        await client.aclose()
    assert all(count == 0 for _, count in counts)


async def test_a_redis_outage_loses_no_final_state_and_fails_no_callback(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    async with RedisServer() as redis_server:
        app = create_app(dataclasses.replace(settings, redis_url=redis_server.url))
        async with serve_app(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
            hub: Hub = app.state.hub
            api = Api(client)
            jobs = [await api.new_job() for _ in range(3)]
            latest: dict[str, int] = {}
            async with (
                open_socket(base, "/api/ws") as dashboard,
                open_socket(base, f"/api/agents/{jobs[0][0]}/instance/ws") as single,
            ):
                await dashboard.send(json.dumps({"type": "subscribe", "agentIds": [a for a, _ in jobs]}))
                for _ in range(3):
                    await next_status(dashboard)
                await next_status(single)

                async def beat_all() -> None:
                    for agent_id, job_id in jobs:
                        latest[agent_id] = await api.heartbeat(job_id)

                await beat_all()
                await redis_server.kill()
                for _ in range(5):
                    await beat_all()  # every callback still succeeds: Postgres is the truth
                assert hub.metrics.publish_failures > 0
                await redis_server.restart()
                # The hub resubscribes and resyncs every agent from Postgres by itself.
                await wait_until(lambda: hub.metrics.resyncs >= 3, timeout=30, what="the resync after Redis")

                seen: dict[str, int] = {}
                async with asyncio.timeout(30):
                    while seen != latest:
                        status = await next_status(dashboard, timeout=30)
                        assert status["version"] > seen.get(status["agentId"], 0)
                        seen[status["agentId"]] = status["version"]
                await until_version(single, latest[jobs[0][0]], timeout=30)
                # And live delivery works again after the outage.
                newest = await api.heartbeat(jobs[1][1])
                await until_version(dashboard, newest, timeout=10)


async def test_a_replica_starts_while_its_redis_is_down_and_goes_live_when_it_is_up(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    async with RedisServer() as redis_server:
        await redis_server.kill()  # the port is known; nothing answers on it yet
        async with live_hub(settings, redis_url=redis_server.url) as (base, hub, api):
            health = await api.client.get("/healthz")
            assert health.status_code == 200 and health.json()["broker"] == "redis-reconnecting"
            # Callbacks and reads work without Redis: Postgres is the truth.
            agent_id, job_id = await api.new_job()
            async with open_socket(base, f"/api/agents/{agent_id}/instance/ws") as ws:
                assert (await next_status(ws))["version"] == 1
                assert await api.heartbeat(job_id) == 2  # its publish fails; the resync covers it

                await redis_server.start()
                await wait_until(lambda: hub.backend.connected, timeout=30, what="the subscriber to connect")
                assert (await api.client.get("/healthz")).json()["broker"] == "redis"
                await until_version(ws, 2, timeout=10)
                newest = await api.heartbeat(job_id)
                await until_version(ws, newest, timeout=10)
