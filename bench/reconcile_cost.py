"""``python -m bench reconcile``: what one reconcile costs a replica at 10k sockets over 1k agents.

In process, on a real Postgres and Redis: the hub's own resources (open_hub), LiveSockets subscribed
through the real broker, and ``reconcile_once`` timed as the replica's timer runs it. Measured twice:
when every socket is current (the usual case: one query), and when every agent is one version
behind (every socket repaired: the query, one read of all the statuses, 10k offers).
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

from sqlalchemy import text

from bench.services import REDIS_URL, SECRETS, Database
from hub.live.live_socket import LiveSocket
from hub.live.reconcile import reconcile_once
from hub.runtime import Hub, open_hub
from hub.runtime.schema import upgrade_database
from hub.settings import Settings
from persistence import make_engine


async def _nothing(*_: object) -> None:
    """The sockets' send and close: this measures the reconcile, not the network."""


_INSERTS = (
    text("INSERT INTO agents (id, owner_id, name, created_at, updated_at) VALUES (:agent, 'bench', 'a', now(), now())"),
    text(
        "INSERT INTO provisioning_jobs (id, agent_id, status, created_at, updated_at)"
        " VALUES (:job, :agent, 'queued', now(), now())"
    ),
    text(
        "INSERT INTO agent_instances (id, agent_id, job_id, status, metadata, version, created_at, updated_at)"
        " VALUES (:instance, :agent, :job, 'pending', '{}', 1, now(), now())"
    ),
)


async def _provision(hub: Hub, agents: int) -> list[str]:
    """``agents`` agents, each with a pending instance at version 1."""
    ids = [uuid.uuid4() for _ in range(agents)]
    async with hub.engine.begin() as connection:
        for agent_id in ids:
            params = {"agent": agent_id, "job": uuid.uuid4().hex, "instance": uuid.uuid4()}
            for insert in _INSERTS:
                await connection.execute(insert, params)
    return [str(agent_id) for agent_id in ids]


async def _timed(hub: Hub) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    repaired = await reconcile_once(hub)
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000, repaired


async def measure(*, sockets: int = 10_000, agents: int = 1_000, rounds: int = 20) -> dict[str, Any]:
    async with Database("reconcile") as database:
        engine = make_engine(database.sqlalchemy_url, pool_size=1)
        try:
            await upgrade_database(engine)
        finally:
            await engine.dispose()
        settings = Settings.build(
            database_url=database.sqlalchemy_url,
            redis_url=REDIS_URL,
            webhook_secret=SECRETS.webhook,
            jwt_secret=SECRETS.jwt,
            admin_token=SECRETS.admin,
            channel_prefix=f"bench-reconcile-{uuid.uuid4().hex[:8]}:",
        )
        async with open_hub(settings) as hub:
            agent_ids = await _provision(hub, agents)
            far_future = time.time() + 86_400
            live = [LiveSocket(hub, _nothing, _nothing, expires_at=far_future) for _ in range(sockets)]
            for index, socket in enumerate(live):
                hub.sockets.add(socket)
                await socket.subscribe(agent_ids[index % agents])
            current = [await _timed(hub) for _ in range(rounds)]
            behind = []
            for _ in range(max(1, rounds // 4)):
                async with hub.engine.begin() as connection:
                    await connection.execute(text("UPDATE agent_instances SET version = version + 1"))
                behind.append(await _timed(hub))
            hub.sockets.clear()
            for socket in live:
                await socket.unsubscribe_all()
    return {
        "sockets": sockets,
        "agents": agents,
        "current": _summary(current),
        "behind": _summary(behind),
    }


def _summary(samples: list[tuple[float, float, int]]) -> dict[str, float]:
    return {
        "wall_ms_p50": round(statistics.median(s[0] for s in samples), 2),
        "wall_ms_max": round(max(s[0] for s in samples), 2),
        "cpu_ms_p50": round(statistics.median(s[1] for s in samples), 2),
        "repaired": statistics.median(s[2] for s in samples),
    }


def report(result: dict[str, Any]) -> str:
    current, behind = result["current"], result["behind"]
    return "\n".join(
        [
            f"Reconcile at {result['sockets']:,} sockets over {result['agents']:,} agents:",
            f"  all current: {current['wall_ms_p50']} ms wall (max {current['wall_ms_max']}), "
            f"{current['cpu_ms_p50']} ms hub CPU, {current['repaired']:g} repaired",
            f"  all behind:  {behind['wall_ms_p50']} ms wall (max {behind['wall_ms_max']}), "
            f"{behind['cpu_ms_p50']} ms hub CPU, {behind['repaired']:g} repaired",
        ]
    )
