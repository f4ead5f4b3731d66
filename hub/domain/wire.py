"""Wire formats: msgspec Structs for what the hub reads and writes, encoded once per version."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

import msgspec

from hub.domain.steps import UI_STEPS, WORKFLOW_STEPS, derive_steps
from persistence.callback_store import InstanceState
from persistence.models import AgentInstance

# The values a callback may carry, and an instance's statuses (pending until its first callback).
CALLBACK_STATUSES: Final = ("queued", "provisioning", "running", "failed", "stopped")
CALLBACK_TYPES: Final = ("heartbeat",)
INSTANCE_STATUSES: Final = ("pending", "provisioning", "running", "failed", "stopped")
# The history's entries: a workflow's callback, or the stall watch's changes.
EVENT_KINDS: Final = ("status", "stalled", "resumed", "timed_out")


def _documented(**schema: Any) -> msgspec.Meta:
    """Facts for the OpenAPI document only: decoding is unchanged, so a value outside them still
    reaches the handler's own check, whose message names the field and the valid values."""
    return msgspec.Meta(extra_json_schema=schema)


Timestamp = Annotated[datetime, _documented(format="date-time")]


class WebhookBody(msgspec.Struct, forbid_unknown_fields=False):
    """A workflow callback. ``status`` and ``step`` are checked against their valid values after
    decoding, so an unknown value is a 422 that lists them rather than a 400."""

    job_id: str
    status: Annotated[str, _documented(enum=list(CALLBACK_STATUSES))] | None = None
    step: Annotated[str, _documented(enum=list(WORKFLOW_STEPS))] | None = None
    type: Annotated[str, _documented(enum=list(CALLBACK_TYPES))] | None = None
    metadata: dict[str, Any] | None = None
    error: str | None = None


class WebhookReply(msgspec.Struct, rename="camel"):
    received: bool
    applied: bool
    version: int


_Moment = Annotated[str, _documented(format="date-time")]


class Step(msgspec.Struct, rename="camel"):
    key: Annotated[str, _documented(enum=[key for key, _ in UI_STEPS])]
    label: str
    state: Annotated[str, _documented(enum=["completed", "active", "pending", "error"])]
    # When the step became active and when it was left (completed or failed); both the same moment
    # for a skipped step. Stored as the steps change, from the accepted callbacks' times.
    started_at: _Moment | None = None
    completed_at: _Moment | None = None
    # The owner's median duration of this step over their last 50 provisionings that went through it
    # (null below 5), fixed when the step started.
    expected_seconds: float | None = None


class AgentStatus(msgspec.Struct, rename="camel"):
    """The one status shape: REST body, websocket frame payload, pub/sub message."""

    agent_id: str
    instance_id: str
    job_id: str
    status: Annotated[str, _documented(enum=list(INSTANCE_STATUSES))]
    current_step: Annotated[str, _documented(enum=list(WORKFLOW_STEPS))] | None
    steps: list[Step]
    error: str | None
    metadata: dict[str, Any]
    last_heartbeat_at: Timestamp | None
    version: int
    updated_at: Timestamp
    # The workflow's last word (last accepted callback, or a running agent's last heartbeat) once its
    # silence passed the hub's limit; null while it is heard from.
    stalled_since: Timestamp | None = None


class AgentSummary(msgspec.Struct, rename="camel"):
    id: str
    owner_id: str
    name: str
    created_at: Timestamp
    status: AgentStatus | None


_Name = Annotated[str, _documented(minLength=1, maxLength=255, pattern=r"\S")]


class NewAgent(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    owner_id: _Name
    name: _Name


class ProvisionRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    job_id: Annotated[str, _documented(minLength=1, maxLength=128, pattern=r"\S")] | None = None
    # The GitHub repository id whose OIDC-authenticated workflows alone may report the job.
    repository_id: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)] | None = None


class Provisioned(msgspec.Struct, rename="camel"):
    job_id: str
    instance_id: str
    status: AgentStatus


class VersionOnly(msgspec.Struct):
    """Decodes just the version (and agent, instance, time of the change) of an encoded status,
    skipping everything else."""

    agentId: str
    version: int
    instanceId: str = ""
    updatedAt: datetime | None = None


class HistoryEvent(msgspec.Struct, rename="camel"):
    """One accepted state change of an agent's provisioning: a callback (``status``), or the hub's
    own ``stalled``, ``resumed`` and ``timed_out``."""

    id: str
    at: Timestamp
    kind: Annotated[str, _documented(enum=list(EVENT_KINDS))]
    job_id: str
    delivery_id: str | None
    status: str | None
    step: str | None
    error: str | None
    applied: bool
    version: int


class History(msgspec.Struct):
    """A page of an agent's history, newest first; ``next`` asks for the page after it (null: the last)."""

    events: list[HistoryEvent]
    next: str | None


def agent_status(instance: AgentInstance | InstanceState) -> AgentStatus:
    times = instance.timeline or {}
    return AgentStatus(
        agent_id=str(instance.agent_id),
        instance_id=str(instance.id),
        job_id=instance.job_id,
        status=instance.status,
        current_step=instance.current_step,
        steps=[
            _step(key, label, state, times.get(key))
            for key, label, state in derive_steps(instance.status, instance.current_step)
        ],
        error=instance.error,
        metadata=dict(instance.instance_metadata or {}),
        last_heartbeat_at=instance.last_heartbeat_at,
        version=instance.version,
        updated_at=instance.updated_at,
        stalled_since=instance.stalled_since,
    )


def _step(key: str, label: str, state: str, times: dict[str, Any] | None) -> Step:
    if not times:
        return Step(key, label, state)
    return Step(key, label, state, times.get("startedAt"), times.get("completedAt"), times.get("expectedSeconds"))


_encoder = msgspec.json.Encoder()


def encode(value: msgspec.Struct | list[Any]) -> bytes:
    return _encoder.encode(value)


def encode_status(instance: AgentInstance | InstanceState) -> bytes:
    return _encoder.encode(agent_status(instance))
