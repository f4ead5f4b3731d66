"""The schema only changes through Alembic, on Postgres and SQLite, and replicas may migrate together."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, text
from sqlalchemy.engine import Connection

from hub.runtime.schema import alembic_config, upgrade_database
from persistence import Base, make_engine
from persistence.models import Agent, AgentInstance, ProvisioningJob
from tests.support.database import fresh_database
from tests.support.process import ROOT

TABLES = {"agents", "provisioning_jobs", "agent_instances", "callback_events", "step_durations", "alembic_version"}


@pytest.fixture
async def empty_database() -> AsyncIterator[str]:
    async with fresh_database("status_hub_migrate") as url:
        yield url


def _drift(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


async def test_replicas_migrating_at_once_do_not_race(empty_database: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "HUB_DATABASE_URL": empty_database, "HUB_WEBHOOK_SECRET": "w" * 20,
           "HUB_JWT_SECRET": "j" * 32, "HUB_ADMIN_TOKEN": "a" * 20}  # fmt: skip

    async def migrate() -> tuple[int | None, bytes]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli", "migrate",
            env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode, output

    results = await asyncio.gather(*(migrate() for _ in range(3)))
    assert [code for code, _ in results] == [0, 0, 0], [output.decode() for _, output in results]
    # One says what it did; the others (having waited for it, if they came while it ran) find it done.
    said = [output.decode() for _, output in results]
    assert sum("Migrated the database schema from revision none (empty database) to " in out for out in said) == 1
    assert sum("Database schema is current (revision " in out for out in said) == 2
    engine = make_engine(empty_database, pool_size=1)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            head = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
            drift = await connection.run_sync(_drift)
    finally:
        await engine.dispose()
    assert tables == TABLES
    assert len(head) == 1
    assert drift == [], "the models and the migrations disagree"


async def test_migrations_run_on_sqlite_and_are_idempotent(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}")
    try:
        await upgrade_database(engine)
        await upgrade_database(engine)
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            drift = await connection.run_sync(_drift)
    finally:
        await engine.dispose()
    assert tables == TABLES
    assert drift == []


def _to(revision: str, *, down: bool = False) -> Callable[[Connection], None]:
    def migrate(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    return migrate


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_instances_replaced_before_0005_are_marked_superseded(
    backend: str, empty_database: str, tmp_path: Path
) -> None:
    url = empty_database if backend == "postgresql" else f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    engine = make_engine(url, pool_size=1)
    created = [datetime(2026, 11, day, tzinfo=UTC) for day in (1, 2, 3)]
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_to("0004"))
            agent = uuid.uuid4()
            # Only the columns 0004 has: the models' own defaults fill none of 0005's.
            await connection.execute(insert(Agent).values(id=agent, owner_id="o", name="a"))
            for version, at in enumerate(created, start=1):
                job = f"job-{version}"
                await connection.execute(insert(ProvisioningJob).values(id=job, agent_id=agent, status="completed"))
                await connection.execute(
                    insert(AgentInstance).values(
                        agent_id=agent, job_id=job, status="running", version=version,
                        last_heartbeat_at=at, last_callback_at=at, created_at=at, updated_at=at,
                    )
                )  # fmt: skip
        await upgrade_database(engine)
        async with engine.connect() as connection:
            query = text("SELECT superseded_at FROM agent_instances ORDER BY version")
            superseded = [_utc(value) for value in (await connection.execute(query)).scalars()]
        # Each replaced when the next was made; the newest not. And back down, and up again.
        assert superseded == [created[1], created[2], None]
        async with engine.begin() as connection:
            await connection.run_sync(_to("0004", down=True))
        await upgrade_database(engine)
        async with engine.connect() as connection:
            drift = await connection.run_sync(_drift)
        assert drift == []
    finally:
        await engine.dispose()


def _utc(value: datetime | str | None) -> datetime | None:
    """A timestamp as the driver returns it (SQLite: text, maybe naive) in UTC."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
