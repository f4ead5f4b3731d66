"""The stall watch: on a timer, one replica at a time finds the workflows silent too long and marks
them stalled (or fails them as presumed lost); each change is published like a callback's."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Final

from sqlalchemy.exc import IntegrityError

from hub.domain.stall_rules import Silences, settle
from hub.domain.wire import encode_status
from hub.runtime.logs import log_fields
from hub.runtime.pool import is_unavailable
from hub.runtime.resources import Hub
from hub.runtime.timers import one_replica, repeat
from persistence.models import utcnow
from persistence.silences import silent_jobs

log = logging.getLogger(__name__)

# Jobs settled per pass, longest silent first; the rest wait a pass.
BATCH: Final = 500
# Any constant shared by all replicas, other than the other timers'; "hubstall" as a 63-bit integer.
_STALL_LOCK_KEY: Final = 0x6875627374616C6C


class StallWatch:
    """The watch of one process. It counts a workflow's silence only from when this process could hear
    it: since it started, and since the last pass that found the database unavailable (callbacks were
    refused then, so their silence is the hub's, not the workflow's)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.silences = Silences.of(hub.settings)
        self.listening_since = utcnow()

    async def run_forever(self) -> None:
        await repeat(self.silences.interval, self.once, "the stall watch")

    async def once(self) -> int | None:
        try:
            return await watch_once(self.hub, self.silences, self.listening_since)
        except Exception as exc:
            if is_unavailable(exc):
                self.listening_since = utcnow()
            raise


async def watch_forever(hub: Hub) -> None:
    await StallWatch(hub).run_forever()


async def watch_once(hub: Hub, silences: Silences, listening_since: datetime) -> int | None:
    """One pass; how many instances it changed, or None when another replica holds the watch."""
    now = utcnow()
    if (now - listening_since).total_seconds() < min(silences.stall_after, silences.heartbeat_timeout):
        return 0  # not listening long enough for any silence to count
    stall_cutoff, fail_cutoff, heartbeat_cutoff = silences.cutoffs(now)
    changed = 0
    async with hub.engine.connect() as connection, one_replica(connection, _STALL_LOCK_KEY) as mine:
        if not mine:
            return None
        jobs = await silent_jobs(
            connection,
            stall_cutoff=stall_cutoff,
            fail_cutoff=fail_cutoff,
            heartbeat_cutoff=heartbeat_cutoff,
            batch=BATCH,
        )
        await connection.commit()
        for job_id in jobs:
            try:
                instance = await settle(connection, job_id, silences, now, listening_since)
                await connection.commit()
            except IntegrityError:
                # The agent was provisioned again while this waited for the job's lock (the new
                # instance took the next version): the next pass decides on what is there then.
                await connection.rollback()
                log.info("Job %s changed while the stall watch looked at it; left to the next pass.", job_id)
                continue
            if instance is None:
                continue
            changed += 1
            agent_id = str(instance.agent_id)
            lost = instance.status == "failed"
            hub.metrics.silent_outcomes["presumed_lost" if lost else "stalled"].inc()
            log.info(
                "The workflow of job %s is %s (version %d).",
                job_id,
                "presumed lost" if lost else "stalled",
                instance.version,
                extra=log_fields(agent_id=agent_id, job_id=job_id),
            )
            hub.versions.observed(agent_id, str(instance.id), instance.version)
            await hub.publish_status(encode_status(instance), agent_id)
    return changed
