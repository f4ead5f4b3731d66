"""The composition root: ``create_app(settings)`` wires everything; nothing is built at import time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide

from hub import agents, dashboard, errors, health, live, sockets, webhooks
from hub.auth import provide_viewer
from hub.runtime import Hub, open_hub
from hub.settings import Settings

SHUTDOWN_CLOSE_TIMEOUT = 3.0


def create_app(settings: Settings) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_hub(settings) as hub:
            app.state.hub = hub
            sweeper = asyncio.create_task(live.sweep_sockets(hub), name="socket-deadlines")
            try:
                yield
            finally:
                sweeper.cancel()
                # uvicorn already sends 1012 on shutdown; this covers servers that do not, all at once
                # and bounded, so stalled clients cannot hold the shutdown.
                closing = [
                    socket.close_connection(live.CLOSE_SERVICE_RESTART, "Service restart: reconnect.")
                    for socket in list(hub.sockets)
                ]
                if closing:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(SHUTDOWN_CLOSE_TIMEOUT):
                            await asyncio.gather(*closing, return_exceptions=True)
                del app.state.hub

    return Litestar(
        route_handlers=[
            webhooks.github_callback,
            agents.list_agents,
            agents.get_instance,
            agents.create_agent,
            agents.provision_agent,
            sockets.agent_socket,
            sockets.dashboard_socket,
            health.health,
            dashboard.index,
            dashboard.static_files(),
        ],
        dependencies={"hub": Provide(_provide_hub, sync_to_thread=False), "viewer": Provide(provide_viewer)},
        exception_handlers=errors.EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=[lifespan],
        state=State({"settings": settings}),
        openapi_config=None,
        # Request logging stays off: headers carry tokens that must never reach a log.
        logging_config=None,
    )


def _provide_hub(state: State) -> Hub:
    hub: Hub = state.hub
    return hub
