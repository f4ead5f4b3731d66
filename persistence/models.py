"""Typed SQLAlchemy models: the only truth about agents and their provisioning."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations can address them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on Postgres (compact, comparable); plain JSON text on SQLite.
JSONDocument = JSON().with_variant(JSONB(), "postgresql")

INSTANCE_STATUSES = ("pending", "provisioning", "running", "failed", "stopped")
TERMINAL_INSTANCE_STATUSES = frozenset({"running", "failed", "stopped"})
ACTIVE_INSTANCE_STATUSES = frozenset({"pending", "provisioning"})


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """A UTC timestamp as the frames write every time: ``2026-12-02T06:01:02.123456Z``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("Timestamps must be timezone-aware; got a naive datetime.")
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONDocument}


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Agent(Timestamped, Base):
    __tablename__ = "agents"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255))


class ProvisioningJob(Timestamped, Base):
    __tablename__ = "provisioning_jobs"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(32), default="queued")
    error: Mapped[str | None] = mapped_column(Text)
    # The GitHub repository (its numeric id) whose OIDC-authenticated workflows alone may report
    # this job; None: any accepted credential may.
    repository_id: Mapped[int | None] = mapped_column(BigInteger)


class AgentInstance(Timestamped, Base):
    __tablename__ = "agent_instances"
    # Versions are monotonic per agent, so (agent_id, version) is unique and finds the newest instance.
    __table_args__ = (UniqueConstraint("agent_id", "version", name="uq_agent_instances_agent_id_version"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    job_id: Mapped[str] = mapped_column(ForeignKey("provisioning_jobs.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(32), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    current_step: Mapped[str | None] = mapped_column(String(64))
    # "metadata" is reserved on declarative classes; the column keeps the design's name.
    instance_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONDocument, default=dict)
    last_heartbeat_at: Mapped[datetime | None]
    # Heartbeats are not logged as events (they would be most of the log); the instance remembers the
    # last one's delivery id and the version it answered, so a redelivery of it is still recognised.
    # Unique: two jobs' heartbeats racing with one delivery id cannot both apply (the second is a 409).
    last_heartbeat_delivery_id: Mapped[str | None] = mapped_column(String(128), index=True, unique=True)
    last_heartbeat_version: Mapped[int | None] = mapped_column(BigInteger)
    # Monotonic per agent (a new instance continues from the previous one), +1 with every visible change.
    version: Mapped[int] = mapped_column(BigInteger, default=1)
    # When each UI step started and was left, and how long it usually takes, written as the steps
    # change: {step key: {"startedAt", "completedAt", "expectedSeconds"}} (see hub.domain.steps).
    timeline: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, default=dict)
    # The workflow's last word: the last callback or heartbeat accepted for this instance (its
    # creation before the first). The stall watch compares it with the configured silences.
    last_callback_at: Mapped[datetime | None]
    # Set (to last_callback_at) when the workflow has been silent too long; the next word clears it.
    stalled_since: Mapped[datetime | None]
    # When a newer provisioning of the agent replaced this instance; the stall watch no longer looks at it.
    superseded_at: Mapped[datetime | None]


# The stall watch's two questions, each answered from a small partial index: provisionings (pending or
# provisioning) by their last word, and running agents that heartbeat, are not yet marked stalled and
# were not provisioned again since (a provisioning in progress cannot be superseded).
_SILENT_PROVISIONING = AgentInstance.status.in_(sorted(ACTIVE_INSTANCE_STATUSES))
Index(
    "ix_agent_instances_silent_provisioning",
    AgentInstance.last_callback_at,
    postgresql_where=_SILENT_PROVISIONING,
    sqlite_where=_SILENT_PROVISIONING,
)
_SILENT_RUNNING = (
    (AgentInstance.status == "running")
    & AgentInstance.last_heartbeat_at.is_not(None)
    & AgentInstance.stalled_since.is_(None)
    & AgentInstance.superseded_at.is_(None)
)
Index(
    "ix_agent_instances_silent_running",
    AgentInstance.last_callback_at,
    postgresql_where=_SILENT_RUNNING,
    sqlite_where=_SILENT_RUNNING,
)


class CallbackEvent(Base):
    """Append-only log of callbacks other than heartbeats (audit, idempotency, step timestamps),
    pruned after the retention window."""

    __tablename__ = "callback_events"

    id: Mapped[int] = mapped_column(
        # SQLite only auto-increments an INTEGER PRIMARY KEY.
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )
    delivery_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("provisioning_jobs.id", ondelete="CASCADE"), index=True)
    instance_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str | None] = mapped_column(String(32))
    step: Mapped[str | None] = mapped_column(String(64))
    applied: Mapped[bool] = mapped_column(Boolean)
    version: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class StepDuration(Base):
    """How long a UI step took in one provisioning that went through it (not skipped, not failed):
    the samples of the owner's expected durations, pruned with the event log."""

    __tablename__ = "step_durations"
    __table_args__ = (Index("ix_step_durations_owner_step", "owner_id", "step", "completed_at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )
    owner_id: Mapped[str] = mapped_column(String(255))
    step: Mapped[str] = mapped_column(String(64))
    instance_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agent_instances.id", ondelete="CASCADE"), index=True)
    seconds: Mapped[float] = mapped_column(Double)
    completed_at: Mapped[datetime] = mapped_column(index=True)
