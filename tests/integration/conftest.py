from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.app import create_app
from hub.settings import Settings
from tests.support.api import Api
from tests.support.lifespan import app_running
from tests.support.redis_cluster import SharedCluster


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Litestar]:
    """The app with its lifespan entered on the tests' own event loop (not a portal thread)."""
    async with app_running(create_app(settings)) as app:
        yield app


@pytest.fixture
async def client(app: Litestar, clean_db: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        yield client


@pytest.fixture
def api(client: httpx.AsyncClient) -> Api:
    return Api(client)


@pytest.fixture(scope="session")
async def redis_cluster() -> AsyncIterator[SharedCluster]:
    """A private Redis Cluster (3 primaries, 3 replicas) shared by the tests that leave it whole, started
    by the first that asks; tests that kill or reshard nodes start their own."""
    shared = SharedCluster()
    try:
        yield shared
    finally:
        await shared.close()
