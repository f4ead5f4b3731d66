"""The dashboard's reads, one round trip each: prebuilt Core statements that return the agent (owner
included) with its newest instance, read on an autocommit connection (no BEGIN, no ROLLBACK)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Row, Table, and_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.callback_store import INSTANCE_COLUMNS, InstanceState, instance_from_row
from persistence.models import Agent, AgentInstance, CallbackEvent, ProvisioningJob

_agents: Table = Agent.__table__  # type: ignore[assignment]
_instances: Table = AgentInstance.__table__  # type: ignore[assignment]
_jobs: Table = ProvisioningJob.__table__  # type: ignore[assignment]
_events: Table = CallbackEvent.__table__  # type: ignore[assignment]
_older = _instances.alias("older")


@dataclass(frozen=True, slots=True)
class AgentRow:
    id: uuid.UUID
    owner_id: str
    name: str
    created_at: datetime
    # Its newest instance; None before its first provisioning.
    instance: InstanceState | None


def _with_newest_instance(*agent_columns: Any) -> Any:
    """The agent's columns and its newest instance's (all None when it has none), by the unique
    (agent_id, version): versions are monotonic per agent."""
    newest = select(func.max(_older.c.version)).where(_older.c.agent_id == _agents.c.id).scalar_subquery()
    return select(*agent_columns, *INSTANCE_COLUMNS).select_from(
        _agents.outerjoin(_instances, and_(_instances.c.agent_id == _agents.c.id, _instances.c.version == newest))
    )


# Built once: SQLAlchemy memoises a statement's cache key on the object, so reuse skips that work.
_ONE: Final = _with_newest_instance(_agents.c.id.label("agent_id"), _agents.c.owner_id).where(
    _agents.c.id == bindparam("agent_id")
)
_OF_OWNER: Final = (
    _with_newest_instance(
        _agents.c.id.label("agent_id"), _agents.c.owner_id, _agents.c.name, _agents.c.created_at.label("agent_created")
    )
    .where(_agents.c.owner_id == bindparam("owner_id"))
    .order_by(_agents.c.created_at, _agents.c.id)
)


_OWNER: Final = select(_agents.c.owner_id).where(_agents.c.id == bindparam("agent_id"))
# The agent's events newest first (ids grow with time), from before a cursor: the id of the last one
# a page showed. The error is picked out of the stored callback, not the whole body read.
_HISTORY: Final = (
    select(
        _events.c.id,
        _events.c.received_at,
        _events.c.kind,
        _events.c.job_id,
        _events.c.delivery_id,
        _events.c.status,
        _events.c.step,
        _events.c.payload["error"].as_string().label("error"),
        _events.c.applied,
        _events.c.version,
    )
    .where(
        _events.c.job_id.in_(select(_jobs.c.id).where(_jobs.c.agent_id == bindparam("agent_id"))),
        _events.c.id < bindparam("before"),
        # Heartbeats are liveness, not history (a log from before they left it may still hold some).
        _events.c.kind != "heartbeat",
    )
    .order_by(_events.c.id.desc())
    .limit(bindparam("limit"))
)


async def owner_of(connection: AsyncConnection, agent_id: uuid.UUID) -> str | None:
    """The agent's owner id; None when there is no such agent."""
    owner: str | None = await connection.scalar(_OWNER, {"agent_id": agent_id})
    return owner


async def agent_history(connection: AsyncConnection, agent_id: uuid.UUID, *, before: int, limit: int) -> list[Any]:
    """Up to ``limit`` events of the agent's provisionings with an id below ``before``, newest first:
    rows with id, received_at, kind, job_id, delivery_id, status, step, error, applied, version."""
    parameters = {"agent_id": agent_id, "before": before, "limit": limit}
    rows: list[Any] = list((await connection.execute(_HISTORY, parameters)).all())
    return rows


async def agent_status(connection: AsyncConnection, agent_id: uuid.UUID) -> tuple[str, InstanceState | None] | None:
    """(owner id, newest instance or None) of one agent; None when there is no such agent."""
    row = (await connection.execute(_ONE, {"agent_id": agent_id})).one_or_none()
    return None if row is None else (row.owner_id, _instance(row))


async def agents_of_owner(connection: AsyncConnection, owner_id: str) -> list[AgentRow]:
    """Every agent of ``owner_id`` with its newest instance, oldest agent first."""
    rows = (await connection.execute(_OF_OWNER, {"owner_id": owner_id})).all()
    return [AgentRow(row.agent_id, row.owner_id, row.name, row.agent_created, _instance(row)) for row in rows]


def _instance(row: Row[Any]) -> InstanceState | None:
    return None if row.instance_id is None else instance_from_row(row)
