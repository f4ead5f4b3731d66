"""The backstop for every lost publish (a replica killed between commit and publish, retries given up,
a Redis failover): every ``HUB_RECONCILE_INTERVAL`` seconds, one query reads the current version of
every agent this process's sockets watch (one per 5,000 agents), and each socket that is behind gets
a fresh snapshot, read once for all the agents behind and shared by their local sockets."""

from __future__ import annotations

import asyncio
import logging
import uuid

from hub.domain.agent_ids import parse_agent_id
from hub.domain.frames import status_frame
from hub.domain.wire import encode_status
from hub.runtime import Hub
from hub.runtime.resources import Watcher
from hub.runtime.timers import repeat
from persistence import queries
from persistence.models import AgentInstance

log = logging.getLogger(__name__)

# Subscriptions read (or sockets repaired) between two yields to the loop: a reconcile over 10k
# sockets must not hold the loop for its whole 20 ms, however many agents each socket watches.
YIELD_EVERY = 1_000
# Agent ids per query: one bound parameter each, and asyncpg takes at most 32,767 per statement.
IDS_PER_QUERY = 5_000


async def reconcile_forever(hub: Hub) -> None:
    """Reconcile on a timer; never dies but by cancellation."""
    await repeat(hub.settings.reconcile_interval, lambda: reconcile_once(hub), "a reconcile")


async def reconcile_once(hub: Hub) -> int:
    """Bring every local socket up to the version Postgres holds; returns how many were behind."""
    watchers: dict[str, list[tuple[Watcher, int]]] = {}
    read = 0
    # The poll cache is reconciled like a socket: it holds a version of each agent polled lately.
    everyone: list[Watcher] = [*hub.sockets, hub.versions]
    for watcher in everyone:
        held = watcher.held_versions()
        for agent_id, version in held.items():
            watchers.setdefault(agent_id, []).append((watcher, version))
        read += len(held)
        if read >= YIELD_EVERY:
            read = 0
            await asyncio.sleep(0)  # ~2 ms of work per batch: callbacks and frames go between them
    keys: dict[str, uuid.UUID] = {}
    for agent_id in watchers:
        key = parse_agent_id(agent_id)
        if key is not None:
            keys[agent_id] = key
    if not keys:
        return 0
    async with hub.sessions() as session:
        current: dict[uuid.UUID, int] = {}
        for chunk in _chunks(list(keys.values())):
            current.update(await queries.latest_versions(session, chunk))
        behind = [
            agent_id
            for agent_id, key in keys.items()
            if key in current and min(version for _, version in watchers[agent_id]) < current[key]
        ]
        if not behind:
            return 0
        instances: dict[uuid.UUID, AgentInstance] = {}
        for chunk in _chunks([keys[agent_id] for agent_id in behind]):
            instances.update(await queries.latest_instances(session, chunk))
    repaired = 0
    for agent_id in behind:
        instance = instances.get(keys[agent_id])
        if instance is None:  # deleted since the first read
            continue
        frame = status_frame("", encode_status(instance))
        for socket, version in watchers[agent_id]:
            if version < frame.version:
                socket.offer(frame)  # a socket closed meanwhile has no subscription left: dropped
                repaired += 1
                if repaired % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
    hub.metrics.reconcile_repairs_total.inc(repaired)
    if repaired:
        log.info("Reconcile: repaired %d sockets or poll cache entries behind on %d agents.", repaired, len(behind))
    return repaired


def _chunks(ids: list[uuid.UUID]) -> list[list[uuid.UUID]]:
    return [ids[start : start + IDS_PER_QUERY] for start in range(0, len(ids), IDS_PER_QUERY)]
