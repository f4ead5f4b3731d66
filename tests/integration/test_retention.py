"""Nothing grows with time: heartbeats are not logged, and events past the retention are pruned."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path

import httpx
from litestar import Litestar
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.app import create_app
from hub.runtime.retention import _PRUNE_LOCK_KEY, prune_once
from hub.runtime.schema import upgrade_database
from hub.runtime.timers import one_replica
from hub.settings import Settings
from persistence import make_engine
from tests.support.api import Api
from tests.support.config import ADMIN_TOKEN, JWT_SECRET, WEBHOOK_SECRET
from tests.support.lifespan import app_running

HEARTBEATS = 10_000


async def _count(engine: AsyncEngine, where: str = "true", **params: str) -> int:
    async with engine.connect() as connection:
        count: int = (
            await connection.execute(text(f"SELECT count(*) FROM callback_events WHERE {where}"), params)
        ).scalar_one()
        return count


async def test_heartbeats_leave_the_event_log_as_it_was(api: Api, db_engine: AsyncEngine) -> None:
    _, job_id = await api.new_job()
    await api.callback({"job_id": job_id, "status": "provisioning", "step": "vm_created"})
    before = await _count(db_engine)
    gate = asyncio.Semaphore(16)

    async def beat(index: int) -> int:
        async with gate:
            response = await api.callback({"job_id": job_id, "type": "heartbeat"}, delivery=f"beat-{index}")
        assert response.status_code == 200, response.text
        version: int = response.json()["version"]
        return version

    versions = await asyncio.gather(*(beat(index) for index in range(HEARTBEATS)))
    assert sorted(versions) == list(range(3, 3 + HEARTBEATS))
    assert await _count(db_engine) == before


async def test_a_redelivered_heartbeat_is_answered_as_before_without_a_row(api: Api, db_engine: AsyncEngine) -> None:
    agent_id, job_id = await api.new_job()
    beat = {"job_id": job_id, "type": "heartbeat"}
    assert (await api.callback(beat, delivery="beat-1")).json()["version"] == 2
    assert (await api.callback(beat)).json()["version"] == 3  # no delivery id: beat-1 stays remembered
    again = await api.callback(beat, delivery="beat-1")
    assert again.json() == {"received": True, "applied": True, "version": 2}
    assert (await api.status(agent_id)).json()["version"] == 3
    assert await _count(db_engine) == 0


async def test_one_heartbeat_delivery_id_sent_by_two_jobs_at_once_applies_once(api: Api) -> None:
    jobs = [(await api.new_job())[1] for _ in range(2)]
    for _ in range(5):  # a few rounds: the race is the point
        delivery = f"shared-{uuid.uuid4()}"
        responses = await asyncio.gather(
            *(api.callback({"job_id": job_id, "type": "heartbeat"}, delivery=delivery) for job_id in jobs)
        )
        assert sorted(response.status_code for response in responses) == [200, 409], [r.text for r in responses]


async def test_events_past_the_retention_are_pruned_and_a_late_redelivery_changes_nothing(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    app = create_app(dataclasses.replace(settings, event_retention=2))
    async with app_running(app), _client(app) as client:
        api = Api(client)
        agent_id, job_id = await api.new_job()
        step = {"job_id": job_id, "status": "provisioning", "step": "vm_created"}
        assert (await api.callback(step, delivery="step-1")).json()["version"] == 2
        assert await _count(clean_db, "delivery_id = :d", d="step-1") == 1

        async def pruned() -> None:
            # Polling the table the hub prunes on its own timer: there is no event to await.
            while await _count(clean_db, "delivery_id = :d", d="step-1"):  # noqa: ASYNC110
                await asyncio.sleep(0.2)

        await asyncio.wait_for(pruned(), 15)
        # Its delivery id is forgotten: the redelivery is routed afresh, and progress never moves backwards.
        late = await api.callback(step, delivery="step-1")
        assert late.json() == {"received": True, "applied": False, "version": 2}
        assert (await api.status(agent_id)).json()["version"] == 2


async def test_one_replica_prunes_at_a_time(db_engine: AsyncEngine, clean_db: AsyncEngine) -> None:
    async with db_engine.connect() as holder:
        await holder.execute(text("SELECT pg_advisory_lock(x'6875627072756E65'::bigint)"))
        assert await prune_once(db_engine, retention=1) is None  # another replica is at it
        await holder.execute(text("SELECT pg_advisory_unlock(x'6875627072756E65'::bigint)"))
    assert await prune_once(db_engine, retention=1) == 0


async def test_the_embedded_default_prunes_too(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    engine = make_engine(url)
    try:
        await upgrade_database(engine)
        settings = Settings.build(
            database_url=url, webhook_secret=WEBHOOK_SECRET, jwt_secret=JWT_SECRET, admin_token=ADMIN_TOKEN
        )
        app = create_app(settings)
        async with app_running(app), _client(app) as client:
            api = Api(client)
            _, job_id = await api.new_job()
            await api.callback({"job_id": job_id, "status": "provisioning", "step": "vm_created"})
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE callback_events SET received_at = '2020-01-01 00:00:00.000000'"))
        assert await _count(engine) == 1
        assert await prune_once(engine, retention=3600) == 1
        assert await _count(engine) == 0
    finally:
        await engine.dispose()


async def test_one_process_prunes_a_shared_sqlite_file_at_a_time(tmp_path: Path) -> None:
    # Workers of `serve --workers N` on SQLite share the file: a lock beside it stands in for
    # Postgres's advisory lock (here another engine on the same file holds it).
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    engine, other = make_engine(url), make_engine(url)
    try:
        await upgrade_database(engine)
        async with other.connect() as connection, one_replica(connection, _PRUNE_LOCK_KEY) as mine:
            assert mine
            assert await prune_once(engine, retention=1) is None  # another process is at it
        assert await prune_once(engine, retention=1) == 0
    finally:
        await engine.dispose()
        await other.dispose()


def _client(app: Litestar) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test")
