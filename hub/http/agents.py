"""REST: the dashboard's reads (conditional, ETag/304) and the main application's admin calls."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Final, TypeVar

import msgspec
from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.params import FromPath

from hub.domain.agent_ids import parse_agent_id
from hub.domain.steps import UI_STEPS
from hub.domain.wire import (
    AgentSummary,
    History,
    HistoryEvent,
    NewAgent,
    Provisioned,
    ProvisionRequest,
    agent_status,
    encode,
    encode_status,
)
from hub.http.guards import ViewerDep, admin_only, request_viewer
from hub.runtime import Hub, HubDep
from persistence import queries, status_reads
from persistence.callback_store import InstanceState

T = TypeVar("T")
_JSON = "application/json"
_new_agent = msgspec.json.Decoder(NewAgent)
_provision_request = msgspec.json.Decoder(ProvisionRequest)


def _agent_key(raw: str) -> uuid.UUID:
    key = parse_agent_id(raw)
    if key is None:
        raise NotFoundException(f"No agent with id {raw!r}.")
    return key


def etag(instance_id: uuid.UUID | str, version: int) -> str:
    # Strong: the version changes with every visible change, so equal tags mean equal bytes.
    return f'"{instance_id}.{version}"'


def etag_matches(if_none_match: str | None, tag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    # If-None-Match uses the weak comparison: W/"x" matches "x".
    return any(candidate.strip().removeprefix("W/") == tag for candidate in if_none_match.split(","))


@get("/api/agents")
async def list_agents(hub: HubDep, viewer: ViewerDep) -> Response[bytes]:
    async with hub.reads.connect() as connection:
        agents = await status_reads.agents_of_owner(connection, viewer.owner_id)
    summaries = [_summary(a.id, a.owner_id, a.name, a.created_at, a.instance) for a in agents]
    return Response(encode(summaries), media_type=_JSON, headers={"Cache-Control": "no-store"})


@get("/api/agents/{agent_id:str}/instance")
async def get_instance(request: Request[Any, Any, Any], agent_id: FromPath[str]) -> Response[bytes]:
    # The dashboards' polling fallback, the hub's most frequent request. The hub and the viewer are
    # looked up, not injected: Litestar resolves two dependencies in a task group, a task each,
    # which cost a poll as many instructions as everything else it does.
    # Its common case, a current poll with a bearer token, is answered before it runs: hub/http/current_polls.py.
    hub: Hub = request.app.state.hub
    viewer = request_viewer(request, hub)
    key = _agent_key(agent_id)
    known = hub.versions.current(str(key))
    if known is not None:
        # The agent's channel keeps this current: a poll that is current reads no database.
        owner_id, instance_id, version = known
        if owner_id != viewer.owner_id:
            raise PermissionDeniedException(f"Agent {agent_id} belongs to another owner.")
        tag = etag(instance_id, version)
        if etag_matches(request.headers.get("if-none-match"), tag):
            return Response(b"", status_code=304, headers={"ETag": tag, "Cache-Control": "no-cache"})
    async with hub.reads.connect() as connection:
        found = await status_reads.agent_status(connection, key)
    if found is None:
        raise NotFoundException(f"No agent with id {agent_id}.")
    owner_id, instance = found
    if owner_id != viewer.owner_id:
        raise PermissionDeniedException(f"Agent {agent_id} belongs to another owner.")
    if instance is None:
        raise NotFoundException(f"Agent {agent_id} has not been provisioned yet.")
    hub.versions.watch(str(key))
    hub.versions.observed(str(key), str(instance.id), instance.version)
    tag = etag(instance.id, instance.version)
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    if etag_matches(request.headers.get("if-none-match"), tag):
        return Response(b"", status_code=304, headers=headers)
    return Response(encode_status(instance), media_type=_JSON, headers=headers)


# The history's pages: how many events at most, and the cursor (an event id) past every event.
HISTORY_LIMITS: Final = (1, 200)
HISTORY_DEFAULT_LIMIT: Final = 50
_NEWEST: Final = 2**63 - 1
_DECIMAL: Final = re.compile(r"[1-9][0-9]*")


@get("/api/agents/{agent_id:str}/events")
async def agent_events(
    request: Request[Any, Any, Any], hub: HubDep, viewer: ViewerDep, agent_id: FromPath[str]
) -> Response[bytes]:
    limit = _history_limit(request.query_params.get("limit"))
    before = _history_cursor(request.query_params.get("before"))
    key = _agent_key(agent_id)
    async with hub.reads.connect() as connection:
        owner_id = await status_reads.owner_of(connection, key)
        if owner_id is None:
            raise NotFoundException(f"No agent with id {agent_id}.")
        if owner_id != viewer.owner_id:
            raise PermissionDeniedException(f"Agent {agent_id} belongs to another owner.")
        # One more than a page: whether there is a page after it.
        rows = await status_reads.agent_history(connection, key, before=before, limit=limit + 1)
    page = [
        HistoryEvent(
            id=str(row.id),
            at=row.received_at,
            kind=row.kind,
            job_id=row.job_id,
            delivery_id=row.delivery_id,
            status=row.status,
            step=row.step,
            error=row.error,
            applied=row.applied,
            version=row.version,
        )
        for row in rows[:limit]
    ]
    following = page[-1].id if len(rows) > limit else None
    return Response(encode(History(page, following)), media_type=_JSON, headers={"Cache-Control": "no-store"})


def _history_limit(raw: str | None) -> int:
    if raw is None:
        return HISTORY_DEFAULT_LIMIT
    low, high = HISTORY_LIMITS
    if _DECIMAL.fullmatch(raw) and low <= int(raw) <= high:
        return int(raw)
    raise HTTPException(
        status_code=400,
        detail=f"Query parameter limit must be an integer from {low} to {high}; got {raw!r}.",
        extra={"field": "limit"},
    )


def _history_cursor(raw: str | None) -> int:
    """The ``next`` of an earlier page: an event id (any larger number starts from the newest)."""
    if raw is None:
        return _NEWEST
    if _DECIMAL.fullmatch(raw) and len(raw) <= len(str(_NEWEST)):
        return min(int(raw), _NEWEST)
    raise HTTPException(
        status_code=400,
        detail=f"Query parameter before must be the `next` of an earlier page (a positive integer); got {raw!r}.",
        extra={"field": "before"},
    )


@post("/api/agents", status_code=201, request_max_body_size=16 * 1024, guards=[admin_only])
async def create_agent(request: Request[Any, Any, Any], hub: HubDep) -> Response[bytes]:
    body = _decode(_new_agent, await request.body())
    _check_text("ownerId", body.owner_id, 255)
    _check_text("name", body.name, 255)
    async with hub.sessions() as session, session.begin():
        agent = await queries.create_agent(session, owner_id=body.owner_id, name=body.name)
    summary = _summary(agent.id, agent.owner_id, agent.name, agent.created_at, None)
    return Response(encode(summary), media_type=_JSON, status_code=201)


@post(
    "/api/agents/{agent_id:str}/provision",
    status_code=201,
    request_max_body_size=16 * 1024,
    guards=[admin_only],
)
async def provision_agent(request: Request[Any, Any, Any], hub: HubDep, agent_id: FromPath[str]) -> Response[bytes]:
    raw = await request.body()
    body = _decode(_provision_request, raw) if raw.strip() else ProvisionRequest()
    job_id = body.job_id if body.job_id is not None else uuid.uuid4().hex
    _check_text("jobId", job_id, 128)
    if body.repository_id is not None:
        _check_repository(hub, body.repository_id)
    key = _agent_key(agent_id)
    async with hub.sessions() as session, session.begin():
        agent = await queries.get_agent(session, key)
        if agent is None:
            raise NotFoundException(f"No agent with id {agent_id}.")
        try:
            job, instance = await queries.start_provisioning(
                session, agent, job_id=job_id, first_step=UI_STEPS[0][0], repository_id=body.repository_id
            )
        except queries.ProvisioningConflict as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
    status = agent_status(instance)
    hub.versions.observed(str(agent.id), str(instance.id), instance.version)
    await hub.publish_status(encode(status), agent_id=str(agent.id))
    reply = Provisioned(job_id=job.id, instance_id=str(instance.id), status=status)
    return Response(encode(reply), media_type=_JSON, status_code=201)


def _summary(
    agent_id: uuid.UUID, owner_id: str, name: str, created_at: datetime, instance: InstanceState | None
) -> AgentSummary:
    return AgentSummary(
        id=str(agent_id),
        owner_id=owner_id,
        name=name,
        created_at=created_at,
        status=None if instance is None else agent_status(instance),
    )


def _check_text(field: str, value: str, longest: int) -> None:
    """A name or id stored as Postgres text: not blank, bounded, and without NUL, which text cannot hold."""
    if not value.strip() or len(value) > longest:
        detail = f"Field {field} must be 1 to {longest} characters, not all blank."
    elif "\x00" in value:
        detail = f"Field {field} must not contain NUL characters."
    else:
        return
    raise HTTPException(status_code=400, detail=detail, extra={"field": field})


def _check_repository(hub: Hub, repository_id: int) -> None:
    """A job bound to a repository is reported only with that repository's OIDC tokens: refused when
    this hub could never accept one, rather than left to wait for callbacks that cannot come."""
    settings = hub.settings
    if not settings.oidc_enabled:
        detail = "Field repositoryId needs GitHub Actions OIDC callbacks, which this hub has off (HUB_OIDC_AUDIENCE)."
    elif repository_id not in settings.oidc_repositories:
        detail = f"Field repositoryId {repository_id} is not among the repositories HUB_OIDC_REPOSITORIES allows."
    else:
        return
    raise HTTPException(status_code=400, detail=detail, extra={"field": "repositoryId"})


def _decode(decoder: msgspec.json.Decoder[T], raw: bytes) -> T:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise HTTPException(status_code=400, detail=f"Invalid request body: {exc}.") from None
    except msgspec.DecodeError as exc:
        raise HTTPException(status_code=400, detail=f"The request body is not valid JSON: {exc}.") from None
