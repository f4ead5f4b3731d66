"""The reconcile: whatever way a publish is lost, every socket catches up with Postgres on a timer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.domain.frames import StatusFrame
from hub.live.reconcile import reconcile_once
from hub.settings import Settings
from persistence import make_engine
from tests.support.api import Api
from tests.support.inbox import Inbox
from tests.support.live import embedded_settings, live_hub
from tests.support.process import hub_environment, hub_process
from tests.support.redis_server import RedisServer
from tests.support.ws import next_status, open_socket, until_version

RECONCILE_INTERVAL = 1.0


async def test_a_lost_publish_reaches_the_socket_within_the_reconcile_interval(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    # The writer publishes on channels nobody listens to: for the watcher's socket, every publish is
    # lost, exactly as if the writer had been killed between its commit and its publish.
    async with (
        live_hub(settings, reconcile_interval=RECONCILE_INTERVAL) as (watcher_base, watcher, _),
        live_hub(settings, channel_prefix=settings.channel_prefix + "elsewhere:") as (_, _, writer),
    ):
        agent_id, job_id = await writer.new_job()
        async with open_socket(watcher_base, f"/api/agents/{agent_id}/instance/ws") as ws:
            assert (await next_status(ws))["version"] == 1
            for step in ("vm_created", "network_configured"):
                reply = await writer.callback({"job_id": job_id, "status": "provisioning", "step": step})
                assert reply.status_code == 200
            repaired = await next_status(ws, timeout=RECONCILE_INTERVAL + 2)
        async with httpx.AsyncClient(base_url=watcher_base) as client:
            health = (await client.get("/healthz")).json()
    # Skipped versions are fine (latest wins); what matters is the one Postgres holds.
    assert repaired["version"] == 3
    assert repaired["currentStep"] == "network_configured"
    assert watcher.metrics.reconcile_repairs >= 1
    assert health["reconcile_repairs"] == watcher.metrics.reconcile_repairs


async def test_a_reconcile_repairs_only_sockets_that_are_behind(settings: Settings, clean_db: AsyncEngine) -> None:
    async with live_hub(settings) as (base, hub, api):
        agent_id, job_id = await api.new_job()
        async with open_socket(base, f"/api/agents/{agent_id}/instance/ws") as ws:
            await next_status(ws)
            await api.callback({"job_id": job_id, "type": "heartbeat"})
            assert (await next_status(ws))["version"] == 2
            assert await reconcile_once(hub) == 0  # current: no snapshot read, nothing sent
            # A change whose publish is lost: committed straight to Postgres, announced nowhere.
            async with clean_db.begin() as connection:
                await connection.execute(
                    text("UPDATE agent_instances SET version = version + 1 WHERE agent_id = :agent"),
                    {"agent": agent_id},
                )
            assert await reconcile_once(hub) == 1
            assert (await next_status(ws))["version"] == 3
            assert await reconcile_once(hub) == 0


async def test_the_embedded_default_reconciles_too(tmp_path: Path) -> None:
    # SQLite reads the versions through an IN list where Postgres takes one array parameter.
    embedded = await embedded_settings(tmp_path)
    engine = make_engine(embedded.database_url)
    try:
        async with live_hub(embedded) as (base, hub, api):
            agent_id, _ = await api.new_job()
            async with open_socket(base, f"/api/agents/{agent_id}/instance/ws") as ws:
                assert (await next_status(ws))["version"] == 1
                assert await reconcile_once(hub) == 0
                async with engine.begin() as connection:
                    await connection.execute(text("UPDATE agent_instances SET version = version + 1"))
                assert await reconcile_once(hub) == 1
                assert (await next_status(ws))["version"] == 2
    finally:
        await engine.dispose()


async def test_a_redelivery_publishes_the_current_status_again(settings: Settings, clean_db: AsyncEngine) -> None:
    """Its first publish may be the one that was lost; republishing is harmless (latest wins)."""
    async with live_hub(settings) as (_, hub, api):
        agent_id, job_id = await api.new_job()
        body = {"job_id": job_id, "status": "provisioning", "step": "vm_created"}
        assert (await api.callback(body, delivery="delivery-1")).json()["version"] == 2
        await api.callback({"job_id": job_id, "type": "heartbeat"}, delivery="delivery-2")
        inbox = Inbox()
        async with hub.broker.subscribe(hub.channel(agent_id), inbox.put):
            again = await api.callback(body, delivery="delivery-1")
            frame: StatusFrame = await inbox.next()
    assert again.json() == {"received": True, "applied": True, "version": 2}
    assert (frame.agent_id, frame.version) == (agent_id, 3)  # the current status, not the first answer's


async def test_a_replica_killed_between_commit_and_publish_loses_no_dashboard(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    """The writer's Redis is frozen, so its publish hangs after the commit; the writer is SIGKILLed,
    then Redis thaws. Whatever became of the publish, the watcher's socket shows the committed
    version within the reconcile interval plus 2 s. (The deterministic loss is the test above.)"""
    async with RedisServer() as redis_server:
        env = hub_environment(dataclasses.replace(settings, redis_url=redis_server.url))
        watcher_env = {**env, "HUB_RECONCILE_INTERVAL": str(RECONCILE_INTERVAL)}
        async with (
            hub_process(env) as writer,
            hub_process(watcher_env) as watcher,
            httpx.AsyncClient(base_url=writer.base, timeout=10) as client,
        ):
            api = Api(client)
            agent_id, job_id = await api.new_job()
            async with open_socket(watcher.base, f"/api/agents/{agent_id}/instance/ws") as ws:
                assert (await next_status(ws))["version"] == 1
                redis_server.pause()
                try:
                    committed = await api.heartbeat(job_id)  # answered after commit, before the publish
                    writer.process.kill()
                    await writer.process.wait()
                finally:
                    redis_server.resume()
                seen = await until_version(ws, committed, timeout=RECONCILE_INTERVAL + 2)
    assert seen[-1] == committed
