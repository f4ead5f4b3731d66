"""The callback write path in as few statements as possible: one locking read, then the writes.

Prebuilt Core statements on a connection, with plain dataclasses instead of ORM objects: a callback
is the hot path, and building statements and running the unit of work cost more CPU than the SQL.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Row, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.models import AgentInstance, CallbackEvent, ProvisioningJob, utcnow

_jobs: Table = ProvisioningJob.__table__  # type: ignore[assignment]
_instances: Table = AgentInstance.__table__  # type: ignore[assignment]
_events: Table = CallbackEvent.__table__  # type: ignore[assignment]
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


def _postgres_write(*, job_changed: bool) -> Any:
    """All of a callback's writes as one statement (one round trip) on Postgres: data-modifying CTEs."""
    statement = _INSERT_EVENT.add_cte(_UPDATE_INSTANCE.cte("instance_written"))
    if job_changed:
        statement = statement.add_cte(_UPDATE_JOB.cte("job_written"))
    return statement


_POSTGRES_WRITES: Final = {changed: _postgres_write(job_changed=changed) for changed in (False, True)}


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
        _original=(row.job_status, row.job_error),
    )


async def save_callback(
    connection: AsyncConnection,
    job: JobState,
    *,
    applied: bool,
    delivery_id: str | None,
    kind: str,
    status: str | None,
    step: str | None,
    payload: dict[str, Any],
) -> None:
    """Write what the callback changed and, unless it is a heartbeat, append it to the event log
    (applied or not: a redelivery gets the same answer). A heartbeat changes a column of the instance
    (which also remembers its delivery id), so the log holds state changes, not liveness."""
    instance = job.instance
    heartbeat = kind == "heartbeat"
    event = {
        "ev_delivery_id": delivery_id,
        "ev_job_id": job.id,
        "ev_instance_id": instance.id,
        "ev_kind": kind,
        "ev_status": status,
        "ev_step": step,
        "ev_applied": applied,
        "ev_version": instance.version,
        "ev_payload": payload,
        "ev_received_at": utcnow(),
    }
    if not applied:
        if not heartbeat:
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
    }
    if heartbeat:
        await connection.execute(_UPDATE_INSTANCE, changes)
        return
    job_changes = {"target_job": job.id, "job_status": job.status, "job_error": job.error}
    if connection.dialect.name == "postgresql":
        # Each round trip costs more CPU than the SQL it carries: one statement for all writes.
        statement = _POSTGRES_WRITES[job.job_changed]
        await connection.execute(statement, {**event, **changes, **(job_changes if job.job_changed else {})})
        return
    await connection.execute(_UPDATE_INSTANCE, changes)
    if job.job_changed:
        await connection.execute(_UPDATE_JOB, {**job_changes, "new_updated_at": instance.updated_at})
    await connection.execute(_INSERT_EVENT, event)


_PRUNE_BATCH: Final = delete(_events).where(
    _events.c.id.in_(
        select(_events.c.id)
        .where(_events.c.received_at < bindparam("cutoff", type_=_events.c.received_at.type))
        .order_by(_events.c.received_at)
        .limit(bindparam("batch"))
        .scalar_subquery()
    )
)


async def prune_events(connection: AsyncConnection, cutoff: datetime, batch: int) -> int:
    """Delete up to ``batch`` events received before ``cutoff`` (oldest first, through the
    received_at index); the number deleted. The caller commits, batch by batch."""
    result = await connection.execute(_PRUNE_BATCH, {"cutoff": cutoff, "batch": batch})
    return result.rowcount
