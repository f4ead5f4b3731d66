"""What a load balancer, an orchestrator or an operator asks of this replica: ``/livez`` (is the
process alive), ``/readyz`` (should it get traffic), ``/healthz`` (the database, and a few counters)
and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import msgspec
from litestar import Request, Response, get
from litestar.exceptions import NotAuthorizedException
from sqlalchemy import text

from hub.domain.tokens import bearer_matches
from hub.runtime import Hub, HubDep
from hub.runtime.canary import CANARY_MAX_AGE
from hub.runtime.metrics import exposition

# Seconds a readiness probe waits for the database's answer.
READY_DATABASE_TIMEOUT: Final = 2.0
PROMETHEUS_TEXT: Final = "text/plain; version=0.0.4; charset=utf-8"

log = logging.getLogger(__name__)


class Health(msgspec.Struct):
    status: str  # "ok" or "degraded"
    database: str  # "ok" or "unavailable"
    broker: str  # "redis", "redis-reconnecting" or "memory"
    sockets: int
    publish_failures: int
    publish_backlog: int
    publish_dropped: int
    slow_socket_closes: int
    resyncs: int
    reconcile_repairs: int
    busy_answers: int


class Alive(msgspec.Struct):
    status: str  # "ok"


class Readiness(msgspec.Struct):
    status: str  # "ready" or "not ready"
    database: str  # "ok" or "unavailable"
    broker: str  # "connected" or "disconnected"
    canary: str  # "ok", "silent" (none back within 15 s) or "waiting" (none back yet)
    canary_age_seconds: float | None
    draining: bool


_ALIVE: Final = msgspec.json.encode(Alive(status="ok"))


@get("/livez", cache=False, sync_to_thread=False)
def liveness() -> Response[bytes]:
    """200 while this process's event loop answers; depends on nothing outside the process, so a
    database or Redis outage never makes an orchestrator restart the replica."""
    return Response(_ALIVE, media_type="application/json")


@get("/readyz", cache=False)
async def readiness(hub: HubDep) -> Response[bytes]:
    """200 only when this replica can serve: Postgres answers, the broker's subscriber is connected
    and hears this replica's own canary, and it is not draining; otherwise 503, each check named."""
    database = await _database_state(hub, timeout=READY_DATABASE_TIMEOUT)
    broker = "connected" if getattr(hub.backend, "connected", True) else "disconnected"
    age = hub.canary.age()
    canary = "waiting" if age is None else "ok" if age <= CANARY_MAX_AGE else "silent"
    ready = database == "ok" and broker == "connected" and canary == "ok" and not hub.draining
    body = Readiness(
        status="ready" if ready else "not ready",
        database=database,
        broker=broker,
        canary=canary,
        canary_age_seconds=None if age is None else round(age, 1),
        draining=hub.draining,
    )
    return Response(msgspec.json.encode(body), media_type="application/json", status_code=200 if ready else 503)


@get("/metrics", cache=False)
async def metrics(request: Request[Any, Any, Any], hub: HubDep) -> Response[bytes]:
    """Prometheus text; with ``HUB_METRICS_TOKEN`` set, only for ``Authorization: Bearer <it>``."""
    token = hub.settings.metrics_token
    if token and not bearer_matches(token, request.headers.get("authorization")):
        raise NotAuthorizedException(
            "The metrics need the metrics token: Authorization: Bearer <HUB_METRICS_TOKEN>.",
            headers={"WWW-Authenticate": 'Bearer realm="status-hub-metrics"'},
        )
    hub.refresh_metrics()
    # Reading every worker's files is file I/O: off the event loop.
    body = await asyncio.to_thread(exposition, hub.metrics)
    return Response(body, media_type=PROMETHEUS_TEXT)


async def _database_state(hub: Hub, *, timeout: float | None = None) -> str:
    try:
        async with asyncio.timeout(timeout):
            async with hub.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:
        # Said in the answer (503); logged only at DEBUG, since a load balancer asks every few seconds.
        log.debug("Health check: the database did not answer: %r", exc)
        return "unavailable"


@get("/healthz", cache=False)
async def health(hub: HubDep) -> Response[bytes]:
    """The database answers (200) or not (503), with this process's counters. Kept for existing
    checks; orchestrators should use /livez and /readyz."""
    database = await _database_state(hub)
    connected = getattr(hub.backend, "connected", None)
    broker = "memory" if connected is None else ("redis" if connected else "redis-reconnecting")
    healthy = database == "ok"
    body = Health(
        status="ok" if healthy and broker != "redis-reconnecting" else "degraded",
        database=database,
        broker=broker,
        sockets=len(hub.sockets),
        publish_failures=hub.metrics.publish_failures,
        publish_backlog=hub.publisher.backlog,
        publish_dropped=hub.metrics.publish_dropped,
        slow_socket_closes=hub.metrics.slow_socket_closes,
        resyncs=hub.metrics.resyncs,
        reconcile_repairs=hub.metrics.reconcile_repairs,
        busy_answers=hub.metrics.busy_answers,
    )
    # Only the database makes a replica useless: without Redis it still takes callbacks and polls.
    return Response(msgspec.json.encode(body), media_type="application/json", status_code=200 if healthy else 503)
