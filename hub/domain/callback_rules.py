"""The callback rules: decode one workflow callback strictly, then route and apply it to the job and
its instance. Runs inside the request's transaction; the caller commits and publishes afterwards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.domain.steps import (
    WORKFLOW_STEPS,
    StepState,
    advance_timeline,
    derive_steps,
    step_states,
    workflow_step_order,
)
from hub.domain.wire import CALLBACK_STATUSES, CALLBACK_TYPES, WebhookBody, WebhookReply
from persistence.callback_store import (
    InstanceState,
    JobState,
    event_row,
    expected_seconds,
    lock_for_callback,
    log_event,
    save_callback,
)
from persistence.models import utcnow

# Instance transitions a callback may make; anything else is acknowledged and changes nothing.
# running, failed and stopped are terminal for provisioning (a running agent may still be stopped).
_ALLOWED: Final[dict[str, frozenset[str]]] = {
    "pending": frozenset({"provisioning", "running", "failed", "stopped"}),
    "provisioning": frozenset({"running", "failed", "stopped"}),
    "running": frozenset({"stopped"}),
    "failed": frozenset(),
    "stopped": frozenset(),
}
_DEFAULT_FAILURE = "The provisioning workflow reported a failure without a message."

# The instance's merged metadata is sent in every frame of the agent, so it stays small.
MAX_METADATA_BYTES: Final = 16 * 1024

# Any JSON: the body is decoded once, whole (unknown fields included, so nothing Postgres would
# refuse slips through them), then converted to WebhookBody and stored as the event's payload.
_document_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class CallbackError(Exception):
    """Bad callback input: an HTTP status code and a message naming the field."""

    def __init__(self, status_code: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class Outcome:
    reply: WebhookReply
    # The instance to encode and publish after commit: after a visible change, and again on a
    # redelivery (its first publish may be what was lost; clients drop versions they have). None
    # when there is nothing to tell.
    to_publish: InstanceState | None
    # The job's agent, for the log line about the callback.
    agent_id: str
    # True when this is the first answer given again to a redelivery.
    redelivery: bool = False


def parse(raw: bytes) -> tuple[WebhookBody, dict[str, Any]]:
    """Strictly decode and validate a callback body (after its signature was checked); the body and
    the whole JSON document (what the event log keeps)."""
    try:
        document = _document_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise CallbackError(400, f"The callback body is not valid JSON: {exc}.") from None
    except UnicodeDecodeError as exc:
        raise CallbackError(400, f"The callback body is not valid UTF-8: {exc.reason} at byte {exc.start}.") from None
    except RecursionError:
        raise CallbackError(400, "The callback body is nested too deeply to be a workflow callback.") from None
    try:
        body = msgspec.convert(document, WebhookBody)
    except msgspec.ValidationError as exc:
        raise CallbackError(400, f"Invalid callback body: {exc}.", _field_of(str(exc))) from None
    if _has_nul(document):
        # Postgres stores no NUL character in text or jsonb: refused here, not with a 500 later.
        raise CallbackError(400, "The callback body must not contain NUL characters (\\u0000) in any string.")
    if not body.job_id.strip():
        raise CallbackError(400, "Field job_id must be a non-empty string.", "job_id")
    if body.type is not None and body.type not in CALLBACK_TYPES:
        raise CallbackError(
            422,
            f"Field type must be one of {', '.join(CALLBACK_TYPES)} or absent; got {body.type!r}.",
            "type",
        )
    if body.type is None:
        if body.status is None:
            raise CallbackError(400, "Field status is required unless type is 'heartbeat'.", "status")
        if body.status not in CALLBACK_STATUSES:
            raise CallbackError(
                422,
                f"Field status must be one of {', '.join(CALLBACK_STATUSES)}; got {body.status!r}.",
                "status",
            )
    if body.step is not None and body.step not in WORKFLOW_STEPS:
        raise CallbackError(422, f"Field step must be one of {', '.join(WORKFLOW_STEPS)}; got {body.step!r}.", "step")
    return body, document


async def apply(
    connection: AsyncConnection,
    body: WebhookBody,
    document: dict[str, Any],
    delivery_id: str | None,
    repository_id: int | None = None,
) -> Outcome:
    """Route and apply one callback; raises CallbackError(404) for an unknown job, and (403) for a job
    bound to a repository when ``repository_id`` (the one the caller's OIDC token proves; None for a
    signed callback, which proves none) is not that one."""
    job = await lock_for_callback(connection, body.job_id, delivery_id)
    if job is None:
        raise CallbackError(404, f"No provisioning job with job_id {body.job_id!r}.", "job_id")
    if job.repository_id is not None and repository_id != job.repository_id:
        caller = (
            "a signed callback proves no repository"
            if repository_id is None
            else f"this token is from repository id {repository_id}"
        )
        raise CallbackError(
            403,
            f"Job {body.job_id!r} accepts callbacks only from repository id {job.repository_id}, with that "
            f"repository's GitHub Actions OIDC token; {caller}.",
        )
    instance = job.instance
    if delivery_id is not None:
        earlier = _earlier_answer(job, delivery_id)
        if earlier is not None:
            return Outcome(earlier, instance if job.current else None, str(instance.agent_id), redelivery=True)

    now = utcnow()
    heartbeat = body.type == "heartbeat"
    before = step_states(derive_steps(instance.status, instance.current_step))
    if not job.current:
        applied = False  # the agent was provisioned again: this job's instance is history
    elif heartbeat:
        applied = _heartbeat(instance, now)
    elif body.status == "provisioning" and body.step is not None:
        applied = _advance_step(job, instance, body.step, body.metadata)
    elif body.status == "running":
        applied = _complete(job, instance, body.metadata)
    else:
        applied = _set_status(job, instance, body)

    resumed = False
    if job.current:
        # Any word from the workflow, applied or not, shows it is alive: the stall watch starts over,
        # and a stall it had marked ends (a visible change).
        instance.last_callback_at = now
        if instance.stalled_since is not None:
            instance.stalled_since = None
            resumed = applied = True
    samples = await advance_version(connection, job, before, now) if applied else ()
    if applied and heartbeat and delivery_id is not None:
        instance.last_heartbeat_delivery_id = delivery_id
        instance.last_heartbeat_version = instance.version
    if resumed:
        await log_event(connection, resume_event(job.id, instance))
    event = None
    if not heartbeat:
        event = event_row(
            job.id,
            instance,
            kind=body.type or "status",
            applied=applied,
            status=body.status,
            step=body.step,
            payload=document,
            delivery_id=delivery_id,
        )
    await save_callback(connection, job, written=job.current, event=event, samples=samples)
    return Outcome(
        WebhookReply(received=True, applied=applied, version=instance.version),
        instance if applied else None,
        str(instance.agent_id),
    )


def _earlier_answer(job: JobState, delivery_id: str) -> WebhookReply | None:
    """The first answer to an earlier delivery with this id (a logged callback, or this instance's
    last heartbeat); None when the id is new. An id used for another job is refused (409)."""
    if job.earlier is not None:
        if job.earlier_job != job.id:
            raise _used_for(job.earlier_job)
        applied, version = job.earlier
        return WebhookReply(received=True, applied=applied, version=version)
    instance = job.instance
    if instance.last_heartbeat_delivery_id == delivery_id and instance.last_heartbeat_version is not None:
        return WebhookReply(received=True, applied=True, version=instance.last_heartbeat_version)
    if job.heartbeat_job is not None and job.heartbeat_job != job.id:
        raise _used_for(job.heartbeat_job)
    return None


def _used_for(other_job: str | None) -> CallbackError:
    return CallbackError(409, f"This delivery id was already used for job {other_job!r}; use a new one per callback.")


async def advance_version(
    connection: AsyncConnection, job: JobState, before: Sequence[StepState], now: datetime
) -> tuple[tuple[str, float], ...]:
    """A visible change: the next version, and the step times it makes (with the expected duration
    of a step that starts now, computed once and stored with it, so frames never change by
    themselves); the owner's step samples it completed."""
    instance = job.instance
    instance.version += 1
    instance.updated_at = now
    after = step_states(derive_steps(instance.status, instance.current_step))
    if after == list(before):
        return ()  # a heartbeat, a stall, a step within the same UI step: the times stay as they are
    change = advance_timeline(instance.timeline, before, after, now)
    instance.timeline = change.times
    if change.started is not None:
        expected = await expected_seconds(connection, job.owner_id, change.started)
        instance.timeline[change.started]["expectedSeconds"] = expected
    # A failure's steps may show a step completed that never finished (one without a step is shown
    # failing at Installing Dependencies): no samples from a failure.
    return () if instance.status == "failed" else change.finished


def resume_event(job_id: str, instance: InstanceState) -> dict[str, Any]:
    """The event-log row saying a stalled workflow was heard from again."""
    return event_row(
        job_id, instance, kind="resumed", applied=True, status=instance.status, step=instance.current_step, payload={}
    )


def _heartbeat(instance: InstanceState, now: datetime) -> bool:
    if instance.status in ("failed", "stopped"):
        return False
    instance.last_heartbeat_at = now
    return True


def _advance_step(job: JobState, instance: InstanceState, step: str, metadata: dict[str, Any] | None) -> bool:
    if instance.status not in ("pending", "provisioning"):
        return False
    if not _is_later(step, instance.current_step):
        return False  # progress never moves backwards
    instance.status = "provisioning"
    instance.current_step = step
    _merge_metadata(instance, metadata)
    job.status = "provisioning"
    return True


def _complete(job: JobState, instance: InstanceState, metadata: dict[str, Any] | None) -> bool:
    if "running" not in _ALLOWED[instance.status]:
        return False
    instance.status = "running"
    instance.current_step = None
    instance.error = None
    _merge_metadata(instance, metadata)
    job.status = "running"
    return True


def fail(job: JobState, message: str) -> bool:
    """Fail the job and its instance as a workflow's failure callback would (the step kept); False
    when the instance can no longer fail."""
    return _set_status(job, job.instance, WebhookBody(job_id=job.id, status="failed", error=message))


def _set_status(job: JobState, instance: InstanceState, body: WebhookBody) -> bool:
    status = body.status
    if status is None or status == "queued" or status not in _ALLOWED[instance.status]:
        # queued only ever describes a pending instance: nothing to change.
        return False
    job.status = status
    instance.status = status
    if status == "failed":
        message = body.error or _DEFAULT_FAILURE
        job.error = message
        instance.error = message
        # Keep current_step so the UI shows where it failed; a later step named by the failure wins.
        if body.step is not None and _is_later(body.step, instance.current_step):
            instance.current_step = body.step
    _merge_metadata(instance, body.metadata)
    return True


def _is_later(step: str, current: str | None) -> bool:
    """True when workflow step ``step`` comes after ``current`` (any step comes after none)."""
    return current not in WORKFLOW_STEPS or workflow_step_order(step) > workflow_step_order(current or "")


def _merge_metadata(instance: InstanceState, metadata: dict[str, Any] | None) -> None:
    """A callback's metadata adds to what earlier callbacks reported; its keys win."""
    if not metadata:
        return
    merged = {**instance.instance_metadata, **metadata}
    size = len(_encoder.encode(merged))
    if size > MAX_METADATA_BYTES:
        raise CallbackError(
            413,
            f"Field metadata would make the instance's metadata {size} bytes encoded; "
            f"the limit is {MAX_METADATA_BYTES} bytes.",
            "metadata",
        )
    instance.instance_metadata = merged


def _has_nul(document: Any) -> bool:
    """True when any string of ``document`` (keys included) holds a NUL; iterative, for any depth."""
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _field_of(message: str) -> str | None:
    # msgspec reports "... - at `$.job_id`" or "Object missing required field `job_id`".
    if "`$." in message:
        return message.rsplit("`$.", 1)[1].split("`", 1)[0].split("[", 1)[0].split(".", 1)[0]
    if "field `" in message:
        return message.split("field `", 1)[1].split("`", 1)[0]
    return None
