"""``POST /api/webhooks/github``: signed workflow callbacks, stored, then published after commit."""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from litestar import Request, Response, post
from litestar.background_tasks import BackgroundTask
from litestar.exceptions import HTTPException
from sqlalchemy.exc import IntegrityError

from hub.domain import callback_rules as callbacks
from hub.domain.signatures import verify
from hub.domain.wire import WebhookBody, encode, encode_status
from hub.runtime import Hub, HubDep
from hub.runtime.logs import log_fields
from hub.runtime.pool import is_unavailable

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
_MAX_DELIVERY_ID = 128


# The outcome a callback's error answer counts as, by its status code.
_ERROR_OUTCOMES: Final = {
    400: "invalid",
    401: "unauthorized",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    503: "unavailable",
}


@post("/api/webhooks/github", status_code=200, request_max_body_size=MAX_BODY_BYTES)
async def github_callback(request: Request[Any, Any, Any], hub: HubDep) -> Response[bytes]:
    started = time.perf_counter()
    outcome = "error"
    try:
        response, outcome = await _answer(request, hub)
        return response
    except HTTPException as exc:
        outcome = _ERROR_OUTCOMES.get(exc.status_code, "error")
        raise
    except Exception as exc:
        # An exhausted pool (busy) or an unreachable database: both answer 503.
        outcome = "unavailable" if is_unavailable(exc) else "error"
        raise
    finally:
        hub.metrics.callback_outcomes[outcome].inc()
        hub.metrics.callback_duration.observe(time.perf_counter() - started)


async def _answer(request: Request[Any, Any, Any], hub: Hub) -> tuple[Response[bytes], str]:
    """The answer to a callback, and its outcome as the metrics count it."""
    delivery_id = request.headers.get("x-github-delivery") or request.headers.get("idempotency-key")
    valid_delivery_id = delivery_id is None or 0 < len(delivery_id) <= _MAX_DELIVERY_ID
    # What every line about this callback carries; errors.py adds it to a 503 or 500 too.
    fields = request.state.log_fields = log_fields(delivery_id=delivery_id if valid_delivery_id else None)
    # Verify the signature on the raw bytes before anything parses them.
    raw = await request.body()
    if not verify(hub.settings.webhook_secret, raw, request.headers.get("x-hub-signature-256")):
        log.info("Refused a callback: missing or invalid X-Hub-Signature-256 (401).", extra=fields)
        raise HTTPException(
            status_code=401,
            detail="Missing or invalid X-Hub-Signature-256: expected sha256=<hex HMAC-SHA256 of the raw body>.",
        )
    if not valid_delivery_id:
        log.info("Refused a callback: its delivery id is over %d characters (400).", _MAX_DELIVERY_ID)
        raise HTTPException(status_code=400, detail=f"X-GitHub-Delivery must be 1 to {_MAX_DELIVERY_ID} characters.")
    try:
        body, document = callbacks.parse(raw)
        fields = request.state.log_fields = log_fields(job_id=body.job_id, delivery_id=delivery_id)
        outcome = await _apply(hub, body, document, delivery_id)
    except callbacks.CallbackError as exc:
        log.info("Refused a callback (%d): %s", exc.status_code, exc.message, extra=fields)
        raise HTTPException(
            status_code=exc.status_code, detail=exc.message, extra={"field": exc.field} if exc.field else None
        ) from None
    _log_outcome(body, outcome, delivery_id)
    background = None
    if outcome.to_publish is not None:
        # Encoded once, after commit; published once the answer is on its way, so the workflow
        # never waits for Redis (and a publish failure is only logged: Postgres has the truth).
        instance = outcome.to_publish
        # This replica's polls see the change at once, before its publish comes back round.
        hub.versions.observed(str(instance.agent_id), str(instance.id), instance.version)
        background = BackgroundTask(hub.publish_status, encode_status(instance), str(instance.agent_id))
    counted = "duplicate" if outcome.redelivery else "applied" if outcome.reply.applied else "unchanged"
    return Response(encode(outcome.reply), media_type="application/json", background=background), counted


def _log_outcome(body: WebhookBody, outcome: callbacks.Outcome, delivery_id: str | None) -> None:
    """One line per callback; heartbeats, many and routine, only at DEBUG."""
    level = logging.DEBUG if body.type == "heartbeat" else logging.INFO
    if not log.isEnabledFor(level):
        return
    what = "heartbeat" if body.type == "heartbeat" else f"status {body.status}"
    if body.step is not None:
        what += f", step {body.step}"
    reply = outcome.reply
    if outcome.redelivery:
        verb = "Answered a redelivered callback as the first time"
    else:
        verb = "Applied a callback" if reply.applied else "Acknowledged a callback without applying it"
    log.log(
        level,
        "%s (%s): version %d.",
        verb,
        what,
        reply.version,
        extra=log_fields(agent_id=outcome.agent_id, job_id=body.job_id, delivery_id=delivery_id),
    )


async def _apply(hub: Hub, body: WebhookBody, document: dict[str, Any], delivery_id: str | None) -> callbacks.Outcome:
    for attempt in (1, 2):
        try:
            async with hub.engine.begin() as connection:
                return await callbacks.apply(connection, body, document, delivery_id)
        except IntegrityError:
            # A race the locking read could not see, because its subqueries ran on a snapshot
            # taken before the other transaction committed: two deliveries with one id (the
            # unique delivery id of the event log, or of the instances' last heartbeats, stops the
            # second), or a new provisioning of the agent (the unique
            # (agent, version) stops a late callback of the old job). One retry reads the
            # committed state and answers as the design says.
            if attempt == 2:
                raise
            log.info(
                "A callback for job %s raced with a concurrent change; retrying it once.",
                body.job_id,
                extra=log_fields(job_id=body.job_id, delivery_id=delivery_id),
            )
    raise AssertionError("unreachable")
