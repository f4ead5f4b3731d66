"""The event log's retention: events (and the step samples of expected durations) older than
``HUB_EVENT_RETENTION`` seconds are deleted in bounded batches, by one replica at a time, at an
interval that follows the retention."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from hub.runtime.timers import one_replica, repeat
from persistence.callback_store import prune_events
from persistence.models import utcnow

log = logging.getLogger(__name__)

# Rows per delete: each batch is its own short transaction, so pruning never holds locks for long.
BATCH: Final = 1_000
# Any constant shared by all replicas, other than the migration's; "hubprune" as a 63-bit integer.
_PRUNE_LOCK_KEY: Final = 0x6875627072756E65


def prune_interval(retention: int) -> float:
    """A tenth of the retention, between a second (tests) and an hour (production's 30 days)."""
    return min(3600.0, max(1.0, retention / 10))


async def prune_forever(engine: AsyncEngine, retention: int) -> None:
    """Prune on a timer; never dies but by cancellation. ``retention`` 0 keeps everything."""
    if retention > 0:
        await repeat(prune_interval(retention), lambda: prune_once(engine, retention), "pruning the event log")


async def prune_once(engine: AsyncEngine, retention: int) -> int | None:
    """Delete every event and step sample older than ``retention`` seconds; how many rows the larger
    of the two lost, or None when another replica holds the prune lock (it is doing the same work)."""
    cutoff = utcnow() - timedelta(seconds=retention)
    async with engine.connect() as connection, one_replica(connection, _PRUNE_LOCK_KEY) as mine:
        if not mine:
            return None
        deleted = 0
        while True:
            count = await prune_events(connection, cutoff, BATCH)
            await connection.commit()
            deleted += count
            if count < BATCH:
                break
    if deleted:
        log.info("Pruned the event log and step samples of what is older than %d s.", retention)
    return deleted
