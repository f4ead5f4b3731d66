"""Wire formats: msgspec Structs for what the hub reads and writes, encoded once per version."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from hub.domain.steps import derive_steps
from persistence.callback_store import InstanceState
from persistence.models import AgentInstance


class WebhookBody(msgspec.Struct, forbid_unknown_fields=False):
    """A workflow callback. ``status`` and ``step`` are checked against their valid values after
    decoding, so an unknown value is a 422 that lists them rather than a 400."""

    job_id: str
    status: str | None = None
    step: str | None = None
    type: str | None = None
    metadata: dict[str, Any] | None = None
    error: str | None = None


class WebhookReply(msgspec.Struct, rename="camel"):
    received: bool
    applied: bool
    version: int


class Step(msgspec.Struct):
    key: str
    label: str
    state: str


class AgentStatus(msgspec.Struct, rename="camel"):
    """The one status shape: REST body, websocket frame payload, pub/sub message."""

    agent_id: str
    instance_id: str
    job_id: str
    status: str
    current_step: str | None
    steps: list[Step]
    error: str | None
    metadata: dict[str, Any]
    last_heartbeat_at: datetime | None
    version: int
    updated_at: datetime


class AgentSummary(msgspec.Struct, rename="camel"):
    id: str
    owner_id: str
    name: str
    created_at: datetime
    status: AgentStatus | None


class NewAgent(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    owner_id: str
    name: str


class ProvisionRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    job_id: str | None = None


class Provisioned(msgspec.Struct, rename="camel"):
    job_id: str
    instance_id: str
    status: AgentStatus


class VersionOnly(msgspec.Struct):
    """Decodes just the version (and agent, instance) of an encoded status, skipping everything else."""

    agentId: str
    version: int
    instanceId: str = ""


def agent_status(instance: AgentInstance | InstanceState) -> AgentStatus:
    return AgentStatus(
        agent_id=str(instance.agent_id),
        instance_id=str(instance.id),
        job_id=instance.job_id,
        status=instance.status,
        current_step=instance.current_step,
        steps=[Step(key, label, state) for key, label, state in derive_steps(instance.status, instance.current_step)],
        error=instance.error,
        metadata=dict(instance.instance_metadata or {}),
        last_heartbeat_at=instance.last_heartbeat_at,
        version=instance.version,
        updated_at=instance.updated_at,
    )


_encoder = msgspec.json.Encoder()


def encode(value: msgspec.Struct | list[Any]) -> bytes:
    return _encoder.encode(value)


def encode_status(instance: AgentInstance | InstanceState) -> bytes:
    return _encoder.encode(agent_status(instance))
