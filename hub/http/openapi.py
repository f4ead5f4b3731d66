"""The OpenAPI 3.1 document (``/schema/openapi.json``) and its page (``/schema``).

The handlers read their bodies raw (a callback's signature is checked on the exact bytes before
anything parses them) and answer with pre-encoded bytes, so Litestar cannot see what they take and
give. The document is therefore declared here, next to nothing but facts about each handler, and
built from the same msgspec structs the handlers decode and encode; paths and methods come from
the handlers themselves, and a test checks that every route the app serves is described.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from litestar import Response, get
from litestar.handlers import HTTPRouteHandler

from hub.domain.wire import (
    AgentStatus,
    AgentSummary,
    History,
    NewAgent,
    Provisioned,
    ProvisionRequest,
    WebhookBody,
    WebhookReply,
)
from hub.http import agents, health, webhooks
from hub.http.health import PROMETHEUS_TEXT

OPENAPI_PATH: Final = "/schema/openapi.json"
_REF: Final = "#/components/schemas/{name}"


class ErrorBody(msgspec.Struct):
    """Every error answer: the status code again, a message meant for a person, and for some 400s
    the offending field."""

    status_code: int
    detail: str
    extra: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    description: str
    body: Any = None  # a msgspec type (a Struct, or a list of them); None: no body
    headers: tuple[str, ...] = ()
    media_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class Documented:
    handler: HTTPRouteHandler
    summary: str
    description: str
    security: tuple[str, ...]  # any one of these schemes; () for none
    answers: Mapping[int, Answer]
    request: Any = None  # the body's msgspec type
    request_required: bool = True
    request_headers: Mapping[str, str] = field(default_factory=dict)  # name -> description
    query: Mapping[str, tuple[dict[str, Any], str]] = field(default_factory=dict)  # name -> (schema, description)
    tags: tuple[str, ...] = ()
    auth_optional: bool = False  # the security schemes apply only when configured


_HEADERS: Final[dict[str, dict[str, Any]]] = {
    "ETag": {"description": 'Strong tag of this version: `"<instanceId>.<version>"`.', "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "string"}},
    "WWW-Authenticate": {"description": "The scheme and realm to authenticate with.", "schema": {"type": "string"}},
}

_STRING: Final = {"type": "string"}
_DELIVERY_ID: Final = {"type": "string", "minLength": 1, "maxLength": 128}
_REQUEST_HEADERS: Final = {"X-GitHub-Delivery": _DELIVERY_ID, "Idempotency-Key": _DELIVERY_ID}

_SECURITY_SCHEMES: Final = {
    "dashboardToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An HS256 JWT signed with HUB_JWT_SECRET by the main application; `sub` is the owner id, "
        "`exp` is required. A token reads only its owner's agents.",
    },
    "dashboardCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "status_hub_token",
        "description": "The same dashboard JWT, in a cookie the main application may set HttpOnly.",
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "HUB_ADMIN_TOKEN: the main application's service-to-service calls.",
    },
    "metricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "HUB_METRICS_TOKEN, when it is set (otherwise /metrics is open).",
    },
    "githubOidc": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A GitHub Actions OIDC id token (RS256, from the workflow's ACTIONS_ID_TOKEN_REQUEST_URL with "
        "`audience=` HUB_OIDC_AUDIENCE), verified against HUB_OIDC_ISSUER's published keys; accepted when "
        "HUB_OIDC_AUDIENCE is set. Its `repository_id` must be in HUB_OIDC_REPOSITORIES, and runs of "
        "`pull_request_target` or `workflow_run` are refused. A job provisioned with `repositoryId` takes "
        "callbacks only from that repository's tokens.",
    },
    "webhookStandard": {
        "type": "apiKey",
        "in": "header",
        "name": "webhook-signature",
        "description": "Standard Webhooks, with HUB_WEBHOOK_SECRET: `webhook-id` (the delivery id: a replay is the "
        "same delivery), `webhook-timestamp` (Unix seconds, within 5 minutes of the hub's clock) and "
        '`webhook-signature: v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<raw body>">`. The key is '
        "a `whsec_<base64>` secret decoded, or any other secret's UTF-8 bytes.",
    },
    "webhookSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Hub-Signature-256",
        "description": "`sha256=<hex HMAC-SHA256 of the raw body under HUB_WEBHOOK_SECRET>`, as GitHub signs webhooks. "
        "Signs the body only: a captured callback can be replayed (use Standard Webhooks or OIDC instead).",
    },
}


def _error(description: str, *headers: str) -> Answer:
    return Answer(description, ErrorBody, headers)


_UNAUTHENTICATED: Final = _error("No dashboard token, or one that does not verify or has expired.", "WWW-Authenticate")
_BUSY: Final = _error(
    "The database is unavailable, or this replica is busy (no connection came free in time); the message says "
    "which. Retry after Retry-After seconds.",
    "Retry-After",
)
_NOT_AN_AGENT: Final = _error("No agent with this id (any string that is not a known agent's UUID).")

DOCUMENTED: Final[tuple[Documented, ...]] = (
    Documented(
        handler=webhooks.github_callback,
        summary="Report a provisioning workflow's progress",
        description="A workflow callback with one credential, checked on the raw body: a GitHub Actions OIDC "
        "token (with HUB_OIDC_AUDIENCE), or a Standard Webhooks or X-Hub-Signature-256 signature (with "
        "HUB_WEBHOOK_SECRET). Idempotent by delivery id, which is `webhook-id` under Standard Webhooks and "
        "otherwise `X-GitHub-Delivery` (or `Idempotency-Key`): a redelivery gets the first answer again and "
        "is applied once.",
        security=("githubOidc", "webhookStandard", "webhookSignature"),
        request=WebhookBody,
        request_headers={
            "X-GitHub-Delivery": "The delivery id (1 to 128 characters) of an OIDC or X-Hub-Signature-256 "
            "callback: a redelivery with it is applied once.",
            "Idempotency-Key": "Used as the delivery id when X-GitHub-Delivery is absent.",
        },
        answers={
            200: Answer(
                "Received; `applied` says whether it changed the status, `version` is the current one.", WebhookReply
            ),
            400: _error("Malformed JSON, a missing or mistyped field (named in the message), or a bad delivery id."),
            401: _error(
                "No credential this hub accepts, or one that does not verify: a bad signature, a `webhook-timestamp` "
                "more than 5 minutes away, or an OIDC token failing a check (`extra.check` names it: format, alg, "
                "kid, signature, iss, aud, exp, nbf or iat)."
            ),
            403: _error(
                "A verified OIDC token the policy refuses (a repository not in HUB_OIDC_REPOSITORIES, a "
                "`pull_request_target` or `workflow_run` run), or a job bound to another repository."
            ),
            404: _error("No job with this `job_id`."),
            409: _error("This delivery id was already used for another job."),
            413: _error("The body is over 64 KiB, or the instance's merged metadata over 16 KiB."),
            422: _error("Unknown `status`, `step` or `type`; the message lists the valid values."),
            503: _error(
                "The database is unavailable, this replica is busy, or the OIDC issuer's keys could not be fetched "
                "to verify the token; the message says which. Retry after Retry-After seconds.",
                "Retry-After",
            ),
        },
        tags=("workflows",),
    ),
    Documented(
        handler=agents.list_agents,
        summary="List the owner's agents",
        description="A dashboard's first load: every agent of the token's owner with its current status "
        "(null before its first provisioning).",
        security=("dashboardToken", "dashboardCookie"),
        answers={200: Answer("The owner's agents.", list[AgentSummary]), 401: _UNAUTHENTICATED, 503: _BUSY},
        tags=("dashboards",),
    ),
    Documented(
        handler=agents.get_instance,
        summary="Read an agent's current status",
        description="The REST fallback of the live socket. Poll with `If-None-Match: <ETag>`: a current "
        "poll is answered 304 without a body (from memory on a replica that watches the agent).",
        security=("dashboardToken", "dashboardCookie"),
        request_headers={"If-None-Match": "The ETag of the version the client has."},
        answers={
            200: Answer("The agent's status.", AgentStatus, ("ETag",)),
            304: Answer("The client's version is current.", None, ("ETag",)),
            401: _UNAUTHENTICATED,
            403: _error("The agent belongs to another owner."),
            404: _error("No agent with this id, or the agent has not been provisioned yet."),
            503: _BUSY,
        },
        tags=("dashboards",),
    ),
    Documented(
        handler=agents.agent_events,
        summary="Page through an agent's history",
        description="The accepted state changes of the agent's provisionings, newest first: each callback "
        "(`status`, applied or not) and the hub's own changes: `stalled` (the workflow was silent past "
        "HUB_STALL_AFTER, or a running agent's heartbeats past HUB_HEARTBEAT_TIMEOUT), `resumed` (it was heard "
        "from again) and `timed_out` (failed as presumed lost after HUB_FAIL_AFTER). Heartbeats are not listed; "
        "events older than HUB_EVENT_RETENTION are gone.",
        security=("dashboardToken", "dashboardCookie"),
        query={
            "limit": (
                {"type": "integer", "minimum": agents.HISTORY_LIMITS[0], "maximum": agents.HISTORY_LIMITS[1]},
                f"Events per page (default {agents.HISTORY_DEFAULT_LIMIT}).",
            ),
            "before": (
                {"type": "string", "pattern": "^[1-9][0-9]{0,18}$"},
                "The `next` of the previous page; absent for the newest events.",
            ),
        },
        answers={
            200: Answer("A page of events; `next` is null on the last page.", History),
            400: _error("`limit` is not an integer from 1 to 200, or `before` is not a page's `next`."),
            401: _UNAUTHENTICATED,
            403: _error("The agent belongs to another owner."),
            404: _NOT_AN_AGENT,
            503: _BUSY,
        },
        tags=("dashboards",),
    ),
    Documented(
        handler=agents.create_agent,
        summary="Create an agent",
        description="The main application registers an agent for an owner.",
        security=("adminToken",),
        request=NewAgent,
        answers={
            201: Answer("The new agent; `status` is null until it is provisioned.", AgentSummary),
            400: _error("Malformed JSON, or a missing, mistyped, blank or too long field (named in the message)."),
            401: _error("No admin token, or a wrong one.", "WWW-Authenticate"),
            413: _error("The body is over 16 KiB."),
            503: _BUSY,
        },
        tags=("admin",),
    ),
    Documented(
        handler=agents.provision_agent,
        summary="Start provisioning an agent",
        description="Creates a queued job and a pending instance, and publishes the new status. The body may "
        "be empty; without `jobId` the hub makes one. With `repositoryId` (a GitHub repository id in "
        "HUB_OIDC_REPOSITORIES), the job takes callbacks only from that repository's OIDC tokens.",
        security=("adminToken",),
        request=ProvisionRequest,
        request_required=False,
        answers={
            201: Answer("The job id to hand to the workflow, and the new status.", Provisioned),
            400: _error(
                "Malformed JSON, a mistyped or too long `jobId`, or a `repositoryId` this hub takes no OIDC "
                "callbacks from."
            ),
            401: _error("No admin token, or a wrong one.", "WWW-Authenticate"),
            404: _NOT_AN_AGENT,
            409: _error("A provisioning of this agent is in progress, or the job id is taken."),
            413: _error("The body is over 16 KiB."),
            503: _BUSY,
        },
        tags=("admin",),
    ),
    Documented(
        handler=health.health,
        summary="This replica's health",
        description="200 while the database answers, 503 when it does not; with the replica's counters.",
        security=(),
        answers={
            200: Answer("The database answers.", health.Health),
            503: Answer("The database does not answer.", health.Health),
        },
        tags=("operations",),
    ),
    Documented(
        handler=health.liveness,
        summary="Is this process alive",
        description="200 while the process's event loop answers; depends on nothing outside the process "
        "(a liveness probe).",
        security=(),
        answers={200: Answer("The process is alive.", health.Alive)},
        tags=("operations",),
    ),
    Documented(
        handler=health.readiness,
        summary="Should this replica get traffic",
        description="200 when Postgres answers, the broker's subscriber is connected and hears this replica's "
        "own canary (within 15 s), and the replica is not draining; otherwise 503 (a readiness probe).",
        security=(),
        answers={
            200: Answer("Ready.", health.Readiness),
            503: Answer("Not ready; each check says why.", health.Readiness),
        },
        tags=("operations",),
    ),
    Documented(
        handler=health.metrics,
        summary="Prometheus metrics",
        description="This replica's metrics (summed over its workers) in the Prometheus text format. With "
        "HUB_METRICS_TOKEN set, the token is required.",
        security=("metricsToken",),
        auth_optional=True,
        answers={
            200: Answer("The metrics.", str, media_type=PROMETHEUS_TEXT),
            401: _error("HUB_METRICS_TOKEN is set and the request does not carry it.", "WWW-Authenticate"),
        },
        tags=("operations",),
    ),
)

_DESCRIPTION: Final = """\
Provisioning workflows report progress by signed callbacks; dashboards read each agent's status here
and receive every new version live over a websocket.

Websockets (not described as operations, which OpenAPI cannot express):
`/api/agents/{agentId}/instance/ws[?version=N]` (one agent) and `/api/ws` (many, subscribed by client
frames `{"type":"subscribe","agentIds":[...],"versions":{...}}`). Authenticate with the dashboard
token (Authorization header, the subprotocols `status-hub.v1` and `bearer.<jwt>`, or the cookie).
Server frames: `{"type":"status","data":<AgentStatus>}`, `{"type":"ping","versions":{...}}` and
`{"type":"error","agentId":...,"agentIds":[...],"code":...,"message":...}`.
"""


def _path_template(path: str) -> str:
    # Litestar's "{agent_id:str}" -> OpenAPI's "{agent_id}".
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def _media(type_: Any, media_type: str = "application/json") -> dict[str, Any]:
    return {media_type: {"schema": msgspec.json.schema_components([type_], ref_template=_REF)[0][0]}}


def _operation(entry: Documented, path: str, method: str) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": "The agent's id."}
        for name in re.findall(r"\{(\w+)\}", path)
    ]
    parameters += [
        {
            "name": name,
            "in": "header",
            "required": False,
            "schema": _REQUEST_HEADERS.get(name, _STRING),
            "description": text,
        }
        for name, text in entry.request_headers.items()
    ]
    parameters += [
        {"name": name, "in": "query", "required": False, "schema": schema, "description": text}
        for name, (schema, text) in entry.query.items()
    ]
    responses: dict[str, Any] = {}
    for status, answer in sorted(entry.answers.items()):
        response: dict[str, Any] = {"description": answer.description}
        if answer.body is not None:
            response["content"] = _media(answer.body, answer.media_type)
        if answer.headers:
            response["headers"] = {name: _HEADERS[name] for name in answer.headers}
        responses[str(status)] = response
    operation: dict[str, Any] = {
        "operationId": entry.handler.handler_name,
        "summary": entry.summary,
        "description": entry.description,
        "tags": list(entry.tags),
        "parameters": parameters,
        "responses": responses,
        # Alternatives: any one scheme of the list. An empty list says "no authentication".
        "security": [{scheme: []} for scheme in entry.security] + ([{}] if entry.auth_optional else []),
    }
    if entry.request is not None:
        operation["requestBody"] = {"required": entry.request_required, "content": _media(entry.request)}
    return operation


def build_document(documented: Iterable[Documented] = DOCUMENTED) -> dict[str, Any]:
    entries = list(documented)
    types: list[Any] = [ErrorBody]
    for entry in entries:
        types += [answer.body for answer in entry.answers.values() if answer.body is not None]
        if entry.request is not None:
            types.append(entry.request)
    _, schemas = msgspec.json.schema_components(types, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for entry in entries:
        for raw_path in sorted(entry.handler.paths):
            path = _path_template(raw_path)
            for method in sorted(entry.handler.http_methods):
                paths.setdefault(path, {})[method.lower()] = _operation(entry, path, method)
    return {
        "openapi": "3.1.0",
        "info": {"title": "status-hub", "version": _version(), "description": _DESCRIPTION},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": _SECURITY_SCHEMES},
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("status-hub")
    except PackageNotFoundError:
        return "0"


_DOCUMENT: bytes | None = None


@get(OPENAPI_PATH, include_in_schema=False, sync_to_thread=False)
def openapi_json() -> Response[bytes]:
    global _DOCUMENT
    if _DOCUMENT is None:
        _DOCUMENT = msgspec.json.encode(build_document())
    return Response(_DOCUMENT, media_type="application/json", headers={"Cache-Control": "no-cache"})
