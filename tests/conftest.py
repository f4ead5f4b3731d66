"""Shared fixtures: a fresh Postgres database per test run, real Redis, the app under test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.runtime.schema import upgrade_database
from hub.settings import Settings
from persistence import make_engine
from tests.support.config import (
    ADMIN_TOKEN,
    ALLOWED_ORIGIN,
    JWT_SECRET,
    REDIS_URL,
    WEBHOOK_SECRET,
)
from tests.support.database import fresh_database


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    """A database made for this run, migrated to head, dropped afterwards."""
    async with fresh_database("status_hub_test") as url:
        engine = make_engine(url, pool_size=1)
        try:
            await upgrade_database(engine)
        finally:
            await engine.dispose()
        yield url


@pytest.fixture(scope="session")
def channel_prefix() -> str:
    # Redis pub/sub ignores the database number: a random prefix keeps runs apart.
    return f"test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture(scope="session")
def settings(database_url: str, channel_prefix: str) -> Settings:
    return Settings.build(
        database_url=database_url,
        redis_url=REDIS_URL,
        webhook_secret=WEBHOOK_SECRET,
        jwt_secret=JWT_SECRET,
        admin_token=ADMIN_TOKEN,
        allowed_origins=(ALLOWED_ORIGIN,),
        channel_prefix=channel_prefix,
        send_timeout=2.0,
    )


@pytest.fixture(scope="session")
async def db_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The tests' own engine, to look at what the hub wrote."""
    engine = make_engine(database_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
async def clean_db(db_engine: AsyncEngine) -> AsyncEngine:
    """Isolation per test: every table empty when the test starts.

    The session's hub may still be reading in the background (the poll cache's first read of an
    agent, a reconcile), and a read locks agents before agent_instances: the TRUNCATE takes its
    locks in that same order, so the two wait for each other instead of deadlocking."""
    async with db_engine.begin() as connection:
        await connection.execute(
            text(
                "TRUNCATE agents, provisioning_jobs, agent_instances, callback_events, step_durations "
                "RESTART IDENTITY CASCADE"
            )
        )
    return db_engine
