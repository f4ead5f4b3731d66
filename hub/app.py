"""The composition root: ``create_app(settings)`` wires everything; nothing is built at import time."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide

from hub.domain.frames import CLOSE_SERVICE_RESTART
from hub.http import agents, dashboard, errors, health, openapi, webhooks
from hub.http.cors import cors_for
from hub.http.current_polls import answer_current_polls
from hub.http.guards import provide_viewer
from hub.http.instrumentation import http_metrics
from hub.live import endpoints
from hub.live.deadlines import sweep_sockets
from hub.live.drain import install_drain
from hub.live.reconcile import reconcile_forever
from hub.runtime import Hub, open_hub
from hub.runtime.metrics import mark_worker_gone, refresh_forever
from hub.runtime.retention import prune_forever
from hub.runtime.stall_watch import watch_forever
from hub.settings import Settings

log = logging.getLogger(__name__)

SHUTDOWN_CLOSE_TIMEOUT = 3.0


def create_app(settings: Settings) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_hub(settings) as hub:
            app.state.hub = hub
            log.info(
                "Ready in process %d: database %s, broker %s.",
                os.getpid(),
                hub.engine.url.render_as_string(hide_password=True),
                "in-memory"
                if not settings.uses_redis
                else "Redis Cluster"
                if settings.redis_cluster_nodes
                else "Redis",
            )
            timers = [
                asyncio.create_task(sweep_sockets(hub), name="socket-deadlines"),
                asyncio.create_task(reconcile_forever(hub), name="reconcile"),
                asyncio.create_task(prune_forever(hub.engine, settings.event_retention), name="prune-events"),
                asyncio.create_task(watch_forever(hub), name="stall-watch"),
                asyncio.create_task(hub.versions.release_idle_forever(), name="poll-cache-release"),
                asyncio.create_task(hub.canary.run(), name="readiness-canary"),
                asyncio.create_task(refresh_forever(hub.refresh_metrics), name="metrics-refresh"),
            ]
            undo_drain = install_drain(hub)
            try:
                yield
            finally:
                undo_drain()
                for timer in timers:
                    timer.cancel()
                # Awaited: a prune or reconcile mid-query must end before the engine is disposed.
                await asyncio.gather(*timers, return_exceptions=True)
                mark_worker_gone()
                # uvicorn already sends 1012 on shutdown; this covers servers that do not, all at once
                # and bounded, so stalled clients cannot hold the shutdown.
                closing = [
                    socket.close_connection(CLOSE_SERVICE_RESTART, "Service restart: reconnect.")
                    for socket in list(hub.sockets)
                ]
                if closing:
                    try:
                        async with asyncio.timeout(SHUTDOWN_CLOSE_TIMEOUT):
                            await asyncio.gather(*closing, return_exceptions=True)
                    except TimeoutError:
                        log.debug("Some of %d sockets did not take their 1012 close in time.", len(closing))
                del app.state.hub

    # HTTP only: a route middleware stays on the stack of every connection it wraps, and a socket
    # lives for hours; around 10,000 sockets its frames would cost a kilobyte or more each.
    http = Router(
        "/",
        route_handlers=[
            webhooks.github_callback,
            agents.list_agents,
            # The polling fallback: a current poll is answered by the middleware, before the handler.
            Router("/", route_handlers=[agents.get_instance], middleware=[answer_current_polls]),
            agents.agent_events,
            agents.create_agent,
            agents.provision_agent,
            health.health,
            health.liveness,
            health.readiness,
            health.metrics,
            dashboard.index,
            dashboard.schema_page,
            openapi.openapi_json,
            dashboard.static_files(),
        ],
        middleware=[cors_for(settings.allowed_origins), http_metrics],
    )
    return Litestar(
        route_handlers=[http, endpoints.agent_socket, endpoints.dashboard_socket],
        dependencies={
            "hub": Provide(_provide_hub, sync_to_thread=False),
            "viewer": Provide(provide_viewer, sync_to_thread=False),
        },
        exception_handlers=errors.EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=[lifespan],
        state=State({"settings": settings}),
        # The document is hub.http.openapi's: the handlers read and answer raw bytes, which
        # Litestar's generator cannot see through.
        openapi_config=None,
        # Request logging stays off: headers carry tokens that must never reach a log.
        logging_config=None,
    )


def _provide_hub(state: State) -> Hub:
    hub: Hub = state.hub
    return hub
