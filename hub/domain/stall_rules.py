"""The stall rules: when a silent workflow is marked stalled, or failed as presumed lost. Runs under the
job's lock, like a callback, and changes the instance the way a callback would (the next version, an
event in the log), so its frames go through the same publish path."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.domain.callback_rules import advance_version, fail
from hub.domain.steps import derive_steps, step_states
from hub.settings import Settings
from persistence.callback_store import InstanceState, event_row, lock_for_callback, save_callback
from persistence.models import ACTIVE_INSTANCE_STATUSES, rfc3339


@dataclass(frozen=True, slots=True)
class Silences:
    """How long a workflow may be silent, in seconds (``fail_after`` 0: never failed)."""

    stall_after: float
    heartbeat_timeout: float
    fail_after: float

    @classmethod
    def of(cls, settings: Settings) -> Silences:
        return cls(settings.stall_after, settings.heartbeat_timeout, settings.fail_after)

    @property
    def interval(self) -> float:
        """How often to look: a tenth of the shortest silence, at least a second, so a stall is found at
        most that late."""
        return max(1.0, min(self.stall_after, self.heartbeat_timeout) / 10)

    def cutoffs(self, now: datetime) -> tuple[datetime, datetime, datetime]:
        """(stall, fail, heartbeat) cutoffs: a last word before one of them is too old."""
        never = datetime.min.replace(tzinfo=now.tzinfo)
        return (
            now - timedelta(seconds=self.stall_after),
            now - timedelta(seconds=self.fail_after) if self.fail_after > 0 else never,
            now - timedelta(seconds=self.heartbeat_timeout),
        )

    @property
    def lost_message(self) -> str:
        return f"No callback from the provisioning workflow for {_duration(self.fail_after)}; it is presumed lost."


def last_word(instance: InstanceState) -> datetime | None:
    """When the workflow was last heard from, as far as the row tells: its last accepted callback or
    heartbeat. A replica still on a version without the timeline (a rolling upgrade) writes no
    last_callback_at, only last_heartbeat_at and updated_at, so those count too; updated_at only while
    the instance is not marked stalled, since marking it moves updated_at."""
    heard = [instance.last_callback_at, instance.last_heartbeat_at]
    if instance.stalled_since is None:
        heard.append(instance.updated_at)
    known = [moment for moment in heard if moment is not None]
    return max(known) if known else None


def verdict(instance: InstanceState, silences: Silences, now: datetime, listening_since: datetime) -> str | None:
    """``timed_out``, ``stalled`` or None for the instance's silence at ``now``. Only the silence since
    ``listening_since`` counts: while the hub or its database was down, callbacks could not be accepted,
    so a workflow that kept trying must not come back to find itself failed as lost."""
    last = last_word(instance)
    if last is None:
        return None
    silent = (now - max(last, listening_since)).total_seconds()
    if instance.status in ACTIVE_INSTANCE_STATUSES:
        if silences.fail_after > 0 and silent >= silences.fail_after:
            return "timed_out"
        if instance.stalled_since is None and silent >= silences.stall_after:
            return "stalled"
        return None
    heartbeating = instance.status == "running" and instance.last_heartbeat_at is not None
    if heartbeating and instance.stalled_since is None and silent >= silences.heartbeat_timeout:
        return "stalled"
    return None


async def settle(
    connection: AsyncConnection, job_id: str, silences: Silences, now: datetime, listening_since: datetime
) -> InstanceState | None:
    """Mark the job's instance stalled or fail it, if it still deserves it under the job's lock (a
    callback may have come, another replica may have been first); the changed instance to publish
    after commit, or None."""
    job = await lock_for_callback(connection, job_id, None)
    if job is None or not job.current:
        return None
    instance = job.instance
    kind = verdict(instance, silences, now, listening_since)
    last = last_word(instance)
    if kind is None or last is None:
        return None
    before = step_states(derive_steps(instance.status, instance.current_step))
    if kind == "timed_out":
        message = silences.lost_message
        fail(job, message)
        instance.stalled_since = None
        payload: dict[str, str] = {"error": message}
    else:
        # Stalled since its last word: how long it has been silent is what its viewers want to know.
        instance.stalled_since = last
        payload = {"silentSince": rfc3339(last)}
    samples = await advance_version(connection, job, before, now)
    event = event_row(
        job.id, instance, kind=kind, applied=True, status=instance.status, step=instance.current_step, payload=payload
    )
    await save_callback(connection, job, written=True, event=event, samples=samples)
    return instance


def _duration(seconds: float) -> str:
    """60 minutes, 1 minute, 90 seconds: whole minutes when it is some, else seconds."""
    whole = round(seconds)
    if whole >= 60 and whole % 60 == 0:
        minutes = whole // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"
