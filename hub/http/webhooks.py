"""``POST /api/webhooks/github``: authenticated workflow callbacks, stored, then published after commit.

A callback proves where it comes from with one of three credentials, each accepted when configured:
a GitHub Actions OIDC token (``Authorization: Bearer``, with HUB_OIDC_AUDIENCE), a Standard Webhooks
signature or an ``X-Hub-Signature-256`` (both with HUB_WEBHOOK_SECRET). The credential is checked on
the raw bytes before anything parses them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Final

from litestar import Request, Response, post
from litestar.background_tasks import BackgroundTask
from litestar.exceptions import HTTPException
from sqlalchemy.exc import IntegrityError

from hub.domain import callback_rules as callbacks
from hub.domain.oidc_tokens import PolicyRefused, TokenRefused, Workflow
from hub.domain.signatures import (
    WEBHOOK_ID,
    WEBHOOK_SIGNATURE,
    WEBHOOK_TIMESTAMP,
    SignatureRefused,
    verify,
    verify_standard,
)
from hub.domain.wire import WebhookBody, encode, encode_status
from hub.runtime import Hub, HubDep
from hub.runtime.logs import log_fields
from hub.runtime.oidc_verifier import KeysUnavailable
from hub.runtime.pool import is_unavailable

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
_MAX_DELIVERY_ID = 128
# Seconds a workflow waits before retrying when the OIDC issuer's keys could not be fetched.
_KEYS_RETRY_AFTER = 5


# The outcome a callback's error answer counts as, by its status code.
_ERROR_OUTCOMES: Final = {
    400: "invalid",
    401: "unauthorized",
    # The outcomes are a fixed set: a credential the policy refuses counts with those that do not verify.
    403: "unauthorized",
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


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a callback, as its credential proves it."""

    scheme: str  # "oidc", "standard-webhooks" or "x-hub-signature-256"
    delivery_id: str | None
    # The workflow an OIDC token stands for (None for a signature, which proves no repository).
    workflow: Workflow | None = None

    @property
    def repository_id(self) -> int | None:
        return None if self.workflow is None else self.workflow.repository_id


async def _answer(request: Request[Any, Any, Any], hub: Hub) -> tuple[Response[bytes], str]:
    """The answer to a callback, and its outcome as the metrics count it."""
    scheme = _scheme(request, hub)
    # Standard Webhooks' signed id is the delivery id; otherwise GitHub's header or Idempotency-Key.
    delivery_id = request.headers.get(WEBHOOK_ID) if scheme == "standard-webhooks" else _github_delivery(request)
    valid_delivery_id = delivery_id is None or 0 < len(delivery_id) <= _MAX_DELIVERY_ID
    # What every line about this callback carries; errors.py adds it to a 503 or 500 too.
    fields = request.state.log_fields = log_fields(delivery_id=delivery_id if valid_delivery_id else None)
    # Verify the credential on the raw bytes before anything parses them.
    raw = await request.body()
    caller = await _authenticate(request, hub, scheme, raw, fields)
    delivery_id = caller.delivery_id
    if delivery_id is not None and not 0 < len(delivery_id) <= _MAX_DELIVERY_ID:
        log.info("Refused a callback: its delivery id is over %d characters (400).", _MAX_DELIVERY_ID)
        name = "webhook-id" if caller.scheme == "standard-webhooks" else "X-GitHub-Delivery"
        raise HTTPException(status_code=400, detail=f"{name} must be 1 to {_MAX_DELIVERY_ID} characters.")
    try:
        body, document = callbacks.parse(raw)
        fields = request.state.log_fields = log_fields(job_id=body.job_id, delivery_id=delivery_id)
        outcome = await _apply(hub, body, document, delivery_id, caller.repository_id)
    except callbacks.CallbackError as exc:
        log.info("Refused a callback (%d): %s", exc.status_code, exc.message, extra=fields)
        raise HTTPException(
            status_code=exc.status_code, detail=exc.message, extra={"field": exc.field} if exc.field else None
        ) from None
    _log_outcome(body, outcome, caller)
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


def _scheme(request: Request[Any, Any, Any], hub: Hub) -> str | None:
    """The credential a callback carries, among those this hub accepts: an OIDC token first, then a
    Standard Webhooks signature, then X-Hub-Signature-256; None when it carries none of them."""
    headers = request.headers
    if hub.oidc is not None and _bearer(request) is not None:
        return "oidc"
    if hub.standard_webhook is not None and WEBHOOK_SIGNATURE in headers:
        return "standard-webhooks"
    if hub.standard_webhook is not None and "x-hub-signature-256" in headers:
        return "x-hub-signature-256"
    return None


async def _authenticate(
    request: Request[Any, Any, Any], hub: Hub, scheme: str | None, raw: bytes, fields: dict[str, str]
) -> Caller:
    """The caller a callback's credential proves; 401 when it proves nothing, 403 when the policy
    refuses a verified OIDC token, 503 when the issuer's keys cannot be had to tell."""
    headers = request.headers
    token = _bearer(request)
    if scheme == "oidc" and token is not None and hub.oidc is not None:
        try:
            workflow = await hub.oidc.verify(token)
        except TokenRefused as exc:
            # The token itself is never logged, only the check it failed.
            log.info("Refused a callback: its OIDC token failed the %s check (401).", exc.check, extra=fields)
            raise HTTPException(
                status_code=401,
                detail=f"The OIDC token failed the {exc.check} check: {exc.message}",
                extra={"check": exc.check},
            ) from None
        except PolicyRefused as exc:
            log.info("Refused a callback with a verified OIDC token (403): %s", exc.message, extra=fields)
            raise HTTPException(status_code=403, detail=exc.message) from None
        except KeysUnavailable as exc:
            log.info("Answered a callback 503: %s", exc, extra=fields)
            raise HTTPException(
                status_code=503, detail=str(exc), headers={"Retry-After": str(_KEYS_RETRY_AFTER)}
            ) from None
        return Caller("oidc", _github_delivery(request), workflow)
    webhook = hub.standard_webhook
    if scheme == "standard-webhooks" and webhook is not None:
        webhook_id = headers.get(WEBHOOK_ID)
        try:
            verify_standard(webhook, raw, webhook_id, headers.get(WEBHOOK_TIMESTAMP), headers.get(WEBHOOK_SIGNATURE))
        except SignatureRefused as exc:
            log.info("Refused a callback: %s (401)", exc.message, extra=fields)
            raise HTTPException(status_code=401, detail=exc.message) from None
        return Caller("standard-webhooks", webhook_id)
    if scheme == "x-hub-signature-256":
        if not verify(hub.settings.webhook_secret, raw, headers.get("x-hub-signature-256")):
            log.info("Refused a callback: missing or invalid X-Hub-Signature-256 (401).", extra=fields)
            raise HTTPException(
                status_code=401,
                detail="Missing or invalid X-Hub-Signature-256: expected sha256=<hex HMAC-SHA256 of the raw body>.",
            )
        return Caller("x-hub-signature-256", _github_delivery(request))
    log.info("Refused a callback: no credential this hub accepts (401).", extra=fields)
    raise HTTPException(status_code=401, detail=_no_credential(hub, sent_bearer=token is not None))


def _no_credential(hub: Hub, *, sent_bearer: bool) -> str:
    accepted = []
    if hub.oidc is not None:
        accepted.append("Authorization: Bearer <GitHub Actions OIDC token>")
    if hub.standard_webhook is not None:
        accepted += [
            "Standard Webhooks headers (webhook-id, webhook-timestamp, webhook-signature)",
            "X-Hub-Signature-256",
        ]
    said = "Missing callback credentials"
    if sent_bearer and hub.oidc is None:
        said = "This hub does not accept OIDC tokens (HUB_OIDC_AUDIENCE is not set)"
    return f"{said}: send one of {'; '.join(accepted)}."


def _bearer(request: Request[Any, Any, Any]) -> str | None:
    scheme, _, token = (request.headers.get("authorization") or "").strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _github_delivery(request: Request[Any, Any, Any]) -> str | None:
    headers = request.headers
    return headers.get("x-github-delivery") or headers.get("idempotency-key")


def _log_outcome(body: WebhookBody, outcome: callbacks.Outcome, caller: Caller) -> None:
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
    sender = caller.workflow.describe() if caller.workflow is not None else caller.scheme
    log.log(
        level,
        "%s (%s) from %s: version %d.",
        verb,
        what,
        sender,
        reply.version,
        extra=log_fields(agent_id=outcome.agent_id, job_id=body.job_id, delivery_id=caller.delivery_id),
    )


async def _apply(
    hub: Hub, body: WebhookBody, document: dict[str, Any], delivery_id: str | None, repository_id: int | None
) -> callbacks.Outcome:
    for attempt in (1, 2):
        try:
            async with hub.engine.begin() as connection:
                return await callbacks.apply(connection, body, document, delivery_id, repository_id)
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
