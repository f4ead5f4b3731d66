"""The embedded default (SQLite) under concurrent callbacks: every one applies, none fails."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from hub.app import create_app
from hub.runtime.schema import upgrade_database
from hub.settings import Settings
from persistence import make_engine
from tests.support.api import Api
from tests.support.config import ADMIN_TOKEN, JWT_SECRET, WEBHOOK_SECRET
from tests.support.lifespan import app_running


async def test_concurrent_callbacks_on_sqlite_all_apply(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    engine = make_engine(url)
    try:
        await upgrade_database(engine)
    finally:
        await engine.dispose()
    settings = Settings.build(
        database_url=url, webhook_secret=WEBHOOK_SECRET, jwt_secret=JWT_SECRET, admin_token=ADMIN_TOKEN
    )
    async with (
        app_running(create_app(settings)) as app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client,
    ):
        api = Api(client)
        jobs = [await api.new_job() for _ in range(4)]
        beats = [api.callback({"job_id": job_id, "type": "heartbeat"}) for _, job_id in jobs for _ in range(10)]
        responses = await asyncio.gather(*beats)
        assert [response.status_code for response in responses] == [200] * 40
        for agent_id, _ in jobs:
            assert (await api.status(agent_id)).json()["version"] == 11
