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
    # Verify the signature on the raw bytes before anything parses them.
    raw = await request.body()
    if not verify(hub.settings.webhook_secret, raw, request.headers.get("x-hub-signature-256")):
        raise HTTPException(
            status_code=401,
            detail="Missing or invalid X-Hub-Signature-256: expected sha256=<hex HMAC-SHA256 of the raw body>.",
        )
    delivery_id = request.headers.get("x-github-delivery") or request.headers.get("idempotency-key")
    if delivery_id is not None and not 0 < len(delivery_id) <= _MAX_DELIVERY_ID:
        raise HTTPException(status_code=400, detail=f"X-GitHub-Delivery must be 1 to {_MAX_DELIVERY_ID} characters.")
    try:
        body, document = callbacks.parse(raw)
        outcome = await _apply(hub, body, document, delivery_id)
    except callbacks.CallbackError as exc:
        raise HTTPException(
            status_code=exc.status_code, detail=exc.message, extra={"field": exc.field} if exc.field else None
        ) from None
    background = None
    if outcome.to_publish is not None:
        # Encoded once, after commit; published once the answer is on its way, so the workflow
        # never waits for Redis (and a publish failure is only logged: Postgres has the truth).
        instance = outcome.to_publish
        # This replica's polls see the change at once, before its publish comes back round.
        hub.versions.observed(str(instance.agent_id), str(instance.id), instance.version)
        background = BackgroundTask(hub.publish_status, encode_status(instance), str(instance.agent_id))
    counted = "duplicate" if outcome.duplicate else "applied" if outcome.reply.applied else "unchanged"
    return Response(encode(outcome.reply), media_type="application/json", background=background), counted


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
            log.info("A callback for job %s raced with a concurrent change; retrying it once.", body.job_id)
    raise AssertionError("unreachable")
