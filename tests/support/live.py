"""A hub served by a real uvicorn on the tests' loop, with a client for its API."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from hub.app import create_app
from hub.runtime import Hub
from hub.runtime.schema import upgrade_database
from hub.settings import Settings
from persistence import make_engine
from tests.support.api import Api
from tests.support.config import ADMIN_TOKEN, JWT_SECRET, WEBHOOK_SECRET
from tests.support.server import serve_app

LiveHub = tuple[str, Hub, Api]


@asynccontextmanager
async def live_hub(settings: Settings, **overrides: Any) -> AsyncIterator[LiveHub]:
    """Serve ``settings`` (with ``overrides``); yields (base URL, the running Hub, an Api client)."""
    app = create_app(dataclasses.replace(settings, **overrides))
    async with serve_app(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield base, app.state.hub, Api(client)


async def embedded_settings(directory: Path) -> Settings:
    """The embedded default's settings (SQLite in ``directory``, the in-memory broker), its database
    migrated through the migrations, partial indexes and all."""
    settings = Settings.build(
        database_url=f"sqlite+aiosqlite:///{directory / 'hub.db'}",
        webhook_secret=WEBHOOK_SECRET,
        jwt_secret=JWT_SECRET,
        admin_token=ADMIN_TOKEN,
    )
    engine = make_engine(settings.database_url)
    try:
        await upgrade_database(engine)
    finally:
        await engine.dispose()
    return settings
