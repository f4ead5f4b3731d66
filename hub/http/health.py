"""``GET /healthz``: what a load balancer or an operator needs to know about this replica."""

from __future__ import annotations

import logging

import msgspec
from litestar import Response, get
from sqlalchemy import text

from hub.runtime import HubDep

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


@get("/healthz", cache=False)
async def health(hub: HubDep) -> Response[bytes]:
    try:
        async with hub.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:
        # Said in the answer (503); logged only at DEBUG, since a load balancer asks every few seconds.
        log.debug("Health check: the database did not answer: %r", exc)
        database = "unavailable"
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
