"""The callback write path in as few statements as possible: one locking read, then the writes.

Prebuilt Core statements on a connection, with plain dataclasses instead of ORM objects: a callback
is the hot path, and building statements and running the unit of work cost more CPU than the SQL.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Row, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.models import Agent, AgentInstance, CallbackEvent, ProvisioningJob, StepDuration, utcnow

_agents: Table = Agent.__table__  # type: ignore[assignment]
_jobs: Table = ProvisioningJob.__table__  # type: ignore[assignment]
_instances: Table = AgentInstance.__table__  # type: ignore[assignment]
_events: Table = CallbackEvent.__table__  # type: ignore[assignment]
_durations: Table = StepDuration.__table__  # type: ignore[assignment]
_newer = _instances.alias("newer")
_heartbeaten = _instances.alias("heartbeaten")


@dataclass(slots=True)
class InstanceState:
    """An instance row as the callback logic reads and changes it (attribute names as the model's)."""

    id: uuid.UUID
    agent_id: uuid.UUID
    job_id: str
    status: str
    current_step: str | None
    error: str | None
    instance_metadata: dict[str, Any]
    last_heartbeat_at: datetime | None
    version: int
    updated_at: datetime
    # The last heartbeat's delivery id and the version it answered (heartbeats are not logged).
    last_heartbeat_delivery_id: str | None = None
    last_heartbeat_version: int | None = None
    # Step times (hub.domain.steps.StepTimes), the workflow's last word, and the stall it ended.
    timeline: dict[str, Any] = field(default_factory=dict)
    last_callback_at: datetime | None = None
    stalled_since: datetime | None = None


@dataclass(slots=True)
class JobState:
    id: str
    status: str
    error: str | None
    instance: InstanceState
    # (applied, version) of an earlier callback with the same delivery id, if there was one.
    earlier: tuple[bool, int] | None = None
    # The job of that earlier callback: a delivery id reused for another job is refused.
    earlier_job: str | None = None
    # The job whose instance's last heartbeat carried this delivery id, if any.
    heartbeat_job: str | None = None
    # False when a newer provisioning of the agent superseded this job's instance.
    current: bool = True
    # The repository whose OIDC-authenticated workflows alone may report this job, if it was bound to one.
    repository_id: int | None = None
    # The agent's owner: expected step durations are the owner's.
    owner_id: str = ""
    _original: tuple[str, str | None] = field(default=("", None), repr=False)

    @property
    def job_changed(self) -> bool:
        return (self.status, self.error) != self._original


# An instance row as instance_from_row reads it (with the agent's id labelled agent_id beside it).
# When the row is locked, these are re-read at its newest version after waiting for the lock, so a
# callback that waited sees what the one before it wrote (subqueries keep the older snapshot).
INSTANCE_COLUMNS: Final = (
    _instances.c.id.label("instance_id"),
    _instances.c.job_id,
    _instances.c.status,
    _instances.c.current_step,
    _instances.c.error,
    _instances.c.metadata.label("instance_metadata"),
    _instances.c.last_heartbeat_at,
    _instances.c.version,
    _instances.c.updated_at,
    _instances.c.last_heartbeat_delivery_id,
    _instances.c.last_heartbeat_version,
    _instances.c.timeline,
    _instances.c.last_callback_at,
    _instances.c.stalled_since,
)


def instance_from_row(row: Row[Any]) -> InstanceState:
    """The instance of a row selected with INSTANCE_COLUMNS and an agent_id."""
    return InstanceState(
        id=row.instance_id,
        agent_id=row.agent_id,
        job_id=row.job_id,
        status=row.status,
        current_step=row.current_step,
        error=row.error,
        instance_metadata=dict(row.instance_metadata or {}),
        last_heartbeat_at=row.last_heartbeat_at,
        version=row.version,
        updated_at=row.updated_at,
        last_heartbeat_delivery_id=row.last_heartbeat_delivery_id,
        last_heartbeat_version=row.last_heartbeat_version,
        timeline=dict(row.timeline or {}),
        last_callback_at=row.last_callback_at,
        stalled_since=row.stalled_since,
    )


def _lock_statement(with_delivery: bool) -> Any:
    columns: list[Any] = [
        _jobs.c.status.label("job_status"),
        _jobs.c.error.label("job_error"),
        _jobs.c.repository_id.label("job_repository_id"),
        _instances.c.agent_id,
        *INSTANCE_COLUMNS,
        # The agent's newest version over all its instances: a callback for a job whose instance
        # was superseded by a newer provisioning must not change anything (versions are per agent).
        select(func.max(_newer.c.version))
        .where(_newer.c.agent_id == _instances.c.agent_id)
        .scalar_subquery()
        .label("agent_version"),
        # A subquery, not a join: FOR UPDATE would lock the agent's row too.
        select(_agents.c.owner_id).where(_agents.c.id == _instances.c.agent_id).scalar_subquery().label("owner_id"),
    ]
    if with_delivery:
        earlier = _events.c.delivery_id == bindparam("delivery_id")
        columns += [
            select(_events.c.applied).where(earlier).scalar_subquery().label("earlier_applied"),
            select(_events.c.version).where(earlier).scalar_subquery().label("earlier_version"),
            select(_events.c.job_id).where(earlier).scalar_subquery().label("earlier_job"),
            select(_heartbeaten.c.job_id)
            .where(_heartbeaten.c.last_heartbeat_delivery_id == bindparam("delivery_id"))
            .limit(1)
            .scalar_subquery()
            .label("heartbeat_job"),
        ]
    return (
        select(*columns)
        .join_from(_jobs, _instances, _instances.c.job_id == _jobs.c.id)
        .where(_jobs.c.id == bindparam("job_id"))
        .order_by(_instances.c.version.desc())
        .limit(1)
        .with_for_update()
    )


# Built once: SQLAlchemy memoises a statement's cache key on the object, so reuse skips that work.
_LOCK: Final = _lock_statement(with_delivery=False)
_LOCK_WITH_DELIVERY: Final = _lock_statement(with_delivery=True)
_UPDATE_INSTANCE: Final = (
    update(_instances)
    .where(_instances.c.id == bindparam("target_instance"))
    .values(
        {
            _instances.c.status: bindparam("new_status"),
            _instances.c.current_step: bindparam("new_step"),
            _instances.c.error: bindparam("new_error"),
            _instances.c.metadata: bindparam("new_metadata", type_=_instances.c.metadata.type),
            _instances.c.last_heartbeat_at: bindparam("new_heartbeat", type_=_instances.c.last_heartbeat_at.type),
            _instances.c.version: bindparam("new_version"),
            _instances.c.updated_at: bindparam("new_updated_at", type_=_instances.c.updated_at.type),
            _instances.c.last_heartbeat_delivery_id: bindparam("new_heartbeat_delivery"),
            _instances.c.last_heartbeat_version: bindparam("new_heartbeat_version"),
            _instances.c.timeline: bindparam("new_timeline", type_=_instances.c.timeline.type),
            _instances.c.last_callback_at: bindparam("new_last_word", type_=_instances.c.last_callback_at.type),
            _instances.c.stalled_since: bindparam("new_stalled_since", type_=_instances.c.stalled_since.type),
        }
    )
)
_UPDATE_JOB: Final = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("target_job"))
    .values(
        {
            _jobs.c.status: bindparam("job_status"),
            _jobs.c.error: bindparam("job_error"),
            _jobs.c.updated_at: bindparam("new_updated_at", type_=_jobs.c.updated_at.type),
        }
    )
)
# Parameter names never equal a column name: inside one statement with data-modifying CTEs,
# SQLAlchemy would otherwise add a parameter named like a column to every SET clause.
_INSERT_EVENT: Final = insert(_events).values(
    {
        _events.c.delivery_id: bindparam("ev_delivery_id"),
        _events.c.job_id: bindparam("ev_job_id"),
        _events.c.instance_id: bindparam("ev_instance_id", type_=_events.c.instance_id.type),
        _events.c.kind: bindparam("ev_kind"),
        _events.c.status: bindparam("ev_status"),
        _events.c.step: bindparam("ev_step"),
        _events.c.applied: bindparam("ev_applied"),
        _events.c.version: bindparam("ev_version"),
        _events.c.payload: bindparam("ev_payload", type_=_events.c.payload.type),
        _events.c.received_at: bindparam("ev_received_at", type_=_events.c.received_at.type),
    }
)


_INSERT_SAMPLE: Final = insert(_durations).values(
    {
        _durations.c.owner_id: bindparam("sample_owner"),
        _durations.c.step: bindparam("sample_step"),
        _durations.c.instance_id: bindparam("sample_instance", type_=_durations.c.instance_id.type),
        _durations.c.seconds: bindparam("sample_seconds"),
        _durations.c.completed_at: bindparam("sample_at", type_=_durations.c.completed_at.type),
    }
)


def _postgres_write(*, job_changed: bool, sampled: bool) -> Any:
    """All of a callback's writes as one statement (one round trip) on Postgres: data-modifying CTEs."""
    statement = _INSERT_EVENT.add_cte(_UPDATE_INSTANCE.cte("instance_written"))
    if job_changed:
        statement = statement.add_cte(_UPDATE_JOB.cte("job_written"))
    if sampled:
        statement = statement.add_cte(_INSERT_SAMPLE.cte("sample_written"))
    return statement


_POSTGRES_WRITES: Final = {
    (changed, sampled): _postgres_write(job_changed=changed, sampled=sampled)
    for changed in (False, True)
    for sampled in (False, True)
}
# The owner's most recent samples of a step, newest first: the expected duration is their median.
EXPECTED_SAMPLES: Final = 50
MIN_SAMPLES: Final = 5
_RECENT_SAMPLES: Final = (
    select(_durations.c.seconds)
    .where(_durations.c.owner_id == bindparam("owner"), _durations.c.step == bindparam("step"))
    .order_by(_durations.c.completed_at.desc())
    .limit(EXPECTED_SAMPLES)
)
_recent = _RECENT_SAMPLES.subquery("recent")
_POSTGRES_MEDIAN: Final = select(
    func.percentile_cont(0.5).within_group(_recent.c.seconds).label("median"),
    func.count().label("samples"),
).select_from(_recent)


async def lock_for_callback(connection: AsyncConnection, job_id: str, delivery_id: str | None) -> JobState | None:
    """The job and its newest instance, both rows locked until the transaction ends (so callbacks of
    one job apply one at a time), and the answer to an earlier delivery with this id, in one query."""
    if delivery_id is None:
        result = await connection.execute(_LOCK, {"job_id": job_id})
    else:
        result = await connection.execute(_LOCK_WITH_DELIVERY, {"job_id": job_id, "delivery_id": delivery_id})
    row = result.one_or_none()
    if row is None:
        return None
    instance = instance_from_row(row)
    found = delivery_id is not None and row.earlier_applied is not None
    return JobState(
        id=job_id,
        status=row.job_status,
        error=row.job_error,
        instance=instance,
        earlier=(bool(row.earlier_applied), int(row.earlier_version)) if found else None,
        earlier_job=row.earlier_job if found else None,
        heartbeat_job=row.heartbeat_job if delivery_id is not None else None,
        # <=, not ==: when this statement waited for the row lock, the locked row is re-read at its
        # newest version while the subquery keeps the statement's older snapshot.
        current=row.agent_version is None or row.agent_version <= instance.version,
        repository_id=row.job_repository_id,
        owner_id=row.owner_id,
        _original=(row.job_status, row.job_error),
    )


async def expected_seconds(connection: AsyncConnection, owner_id: str, step: str) -> float | None:
    """The median of the owner's last EXPECTED_SAMPLES durations of ``step``, computed by the
    database; None below MIN_SAMPLES samples."""
    parameters = {"owner": owner_id, "step": step}
    if connection.dialect.name == "postgresql":
        row = (await connection.execute(_POSTGRES_MEDIAN, parameters)).one()
        return float(row.median) if row.samples >= MIN_SAMPLES else None
    # SQLite (the embedded default) has no percentile function: the same samples, their median here.
    samples = (await connection.execute(_RECENT_SAMPLES, parameters)).scalars().all()
    return float(statistics.median(samples)) if len(samples) >= MIN_SAMPLES else None


def event_row(
    job_id: str,
    instance: InstanceState,
    *,
    kind: str,
    applied: bool,
    status: str | None,
    step: str | None,
    payload: dict[str, Any],
    delivery_id: str | None = None,
) -> dict[str, Any]:
    """The parameters of one event-log row about ``instance`` at its current version."""
    return {
        "ev_delivery_id": delivery_id,
        "ev_job_id": job_id,
        "ev_instance_id": instance.id,
        "ev_kind": kind,
        "ev_status": status,
        "ev_step": step,
        "ev_applied": applied,
        "ev_version": instance.version,
        "ev_payload": payload,
        "ev_received_at": utcnow(),
    }


async def log_event(connection: AsyncConnection, event: dict[str, Any]) -> None:
    await connection.execute(_INSERT_EVENT, event)


async def save_callback(
    connection: AsyncConnection,
    job: JobState,
    *,
    written: bool,
    event: dict[str, Any] | None,
    samples: Sequence[tuple[str, float]] = (),
) -> None:
    """Write the instance (when ``written``: a visible change, or only the workflow's last word), the
    event (None for a heartbeat: the log holds state changes, not liveness; a heartbeat changes columns
    of the instance, which also remembers its delivery id) and the owner's new step samples."""
    instance = job.instance
    if not written:
        if event is not None:
            await connection.execute(_INSERT_EVENT, event)
        return
    changes = {
        "target_instance": instance.id,
        "new_status": instance.status,
        "new_step": instance.current_step,
        "new_error": instance.error,
        "new_metadata": instance.instance_metadata,
        "new_heartbeat": instance.last_heartbeat_at,
        "new_version": instance.version,
        "new_updated_at": instance.updated_at,
        "new_heartbeat_delivery": instance.last_heartbeat_delivery_id,
        "new_heartbeat_version": instance.last_heartbeat_version,
        "new_timeline": instance.timeline,
        "new_last_word": instance.last_callback_at,
        "new_stalled_since": instance.stalled_since,
    }
    sample_rows = [
        {
            "sample_owner": job.owner_id,
            "sample_step": step,
            "sample_instance": instance.id,
            "sample_seconds": seconds,
            "sample_at": instance.updated_at,
        }
        for step, seconds in samples
    ]
    if event is None:
        await connection.execute(_UPDATE_INSTANCE, changes)
    elif connection.dialect.name == "postgresql" and len(sample_rows) <= 1:
        # Each round trip costs more CPU than the SQL it carries: one statement for all writes.
        statement = _POSTGRES_WRITES[job.job_changed, bool(sample_rows)]
        parameters = {**event, **changes, **(sample_rows[0] if sample_rows else {})}
        if job.job_changed:
            parameters |= {"target_job": job.id, "job_status": job.status, "job_error": job.error}
        await connection.execute(statement, parameters)
        return
    else:
        await connection.execute(_UPDATE_INSTANCE, changes)
        if job.job_changed:
            job_changes = {"target_job": job.id, "job_status": job.status, "job_error": job.error}
            await connection.execute(_UPDATE_JOB, {**job_changes, "new_updated_at": instance.updated_at})
        await connection.execute(_INSERT_EVENT, event)
    if sample_rows:
        await connection.execute(_INSERT_SAMPLE, sample_rows)


def _prune_batch(table: Table, moment: Any) -> Any:
    return delete(table).where(
        table.c.id.in_(
            select(table.c.id)
            .where(moment < bindparam("cutoff", type_=moment.type))
            .order_by(moment)
            .limit(bindparam("batch"))
            .scalar_subquery()
        )
    )


# The event log by received_at, the step samples by completed_at: both through their time's index.
_PRUNE_BATCHES: Final = (
    _prune_batch(_events, _events.c.received_at),
    _prune_batch(_durations, _durations.c.completed_at),
)


async def prune_events(connection: AsyncConnection, cutoff: datetime, batch: int) -> int:
    """Delete up to ``batch`` events received before ``cutoff`` and as many step samples taken before
    it, oldest first; the larger of the two counts (under ``batch``: nothing older is left). The
    caller commits, batch by batch."""
    deleted = 0
    for statement in _PRUNE_BATCHES:
        result = await connection.execute(statement, {"cutoff": cutoff, "batch": batch})
        deleted = max(deleted, result.rowcount)
    return deleted
