"""The stall watch: on a timer, one replica at a time finds the workflows silent too long and marks
them stalled (or fails them as presumed lost); each change is published like a callback's."""

from __future__ import annotations

import logging
from typing import Final

from hub.domain.stall_rules import Silences, settle
from hub.domain.wire import encode_status
from hub.runtime.logs import log_fields
from hub.runtime.resources import Hub
from hub.runtime.timers import one_replica, repeat
from persistence.models import utcnow
from persistence.silences import silent_jobs

log = logging.getLogger(__name__)

# Jobs settled per pass, longest silent first; the rest wait a pass.
BATCH: Final = 500
# Any constant shared by all replicas, other than the other timers'; "hubstall" as a 63-bit integer.
_STALL_LOCK_KEY: Final = 0x6875627374616C6C


async def watch_forever(hub: Hub) -> None:
    silences = Silences.of(hub.settings)
    await repeat(silences.interval, lambda: watch_once(hub, silences), "the stall watch")


async def watch_once(hub: Hub, silences: Silences) -> int | None:
    """One pass; how many instances it changed, or None when another replica holds the watch."""
    now = utcnow()
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
            instance = await settle(connection, job_id, silences, now)
            await connection.commit()
            if instance is None:
                continue
            changed += 1
            agent_id = str(instance.agent_id)
            log.info(
                "The workflow of job %s is %s (version %d).",
                job_id,
                "presumed lost" if instance.status == "failed" else "stalled",
                instance.version,
                extra=log_fields(agent_id=agent_id, job_id=job_id),
            )
            hub.versions.observed(agent_id, str(instance.id), instance.version)
            await hub.publish_status(encode_status(instance), agent_id)
    return changed
