"""A hub served by a real uvicorn on the tests' loop, with a client for its API."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from hub.app import create_app
from hub.runtime import Hub
from hub.settings import Settings
from tests.support.api import Api
from tests.support.server import serve_app

LiveHub = tuple[str, Hub, Api]


@asynccontextmanager
async def live_hub(settings: Settings, **overrides: Any) -> AsyncIterator[LiveHub]:
    """Serve ``settings`` (with ``overrides``); yields (base URL, the running Hub, an Api client)."""
    app = create_app(dataclasses.replace(settings, **overrides))
    async with serve_app(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield base, app.state.hub, Api(client)
