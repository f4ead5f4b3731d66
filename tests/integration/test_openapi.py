"""The OpenAPI document against a live hub on Postgres: schemathesis sends generated requests (valid
and invalid ones) as a dashboard and as the main application, and every answer must be one the
document describes, with the body, content type and headers it says; none may be a 5xx."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.routes import HTTPRoute
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.app import create_app
from hub.domain.signatures import sign, sign_standard, standard_webhook
from hub.http.openapi import DOCUMENTED
from hub.settings import Settings
from tests.support.api import Api, token_for
from tests.support.config import ADMIN_TOKEN, WEBHOOK_SECRET
from tests.support.process import Replica, hub_environment, hub_process

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 60
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "x-hub-signature-256", "webhook-id", "webhook-timestamp", "webhook-signature"}
)
OWNER = "owner-1"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_every_http_route_is_documented(settings: Settings) -> None:
    app = create_app(settings)
    # Pages and static files are marked include_in_schema=False: they are for browsers, not clients.
    served = {
        (path, method)
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        if handler.resolve_include_in_schema()
        for path in handler.paths
        for method in handler.http_methods
    }
    documented = {
        (path, method) for entry in DOCUMENTED for path in entry.handler.paths for method in entry.handler.http_methods
    }
    assert served == documented


async def test_the_document_is_served(clean_db: AsyncEngine, settings: Settings) -> None:
    async with hub_process(hub_environment(settings)) as replica, httpx.AsyncClient(base_url=replica.base) as client:
        document = await client.get("/schema/openapi.json")
        page = await client.get("/schema")
    assert document.status_code == 200
    assert document.json()["openapi"].startswith("3.1")
    assert set(document.json()["components"]["securitySchemes"]) == {
        "dashboardToken",
        "dashboardCookie",
        "adminToken",
        "metricsToken",
        "githubOidc",
        "webhookStandard",
        "webhookSignature",
    }
    assert page.status_code == 200
    assert "/static/schema.js" in page.text


async def test_live_hub_conforms_to_its_document(clean_db: AsyncEngine, settings: Settings) -> None:
    async with hub_process(hub_environment(settings)) as replica, httpx.AsyncClient(base_url=replica.base) as client:
        api = Api(client)
        agent_id, job_id = await api.new_job(OWNER)
        other_agent_id, _ = await api.new_job("owner-2")
        # One not provisioned yet: the only kind a provision can succeed on (the others' are in progress).
        fresh_agent_id = (await api.create_agent(OWNER))["id"]
        known = Known(agent_ids=[agent_id, other_agent_id, fresh_agent_id], job_id=job_id)
        # schemathesis is synchronous (requests): it runs in a thread against the replica's process.
        failures, seen = await asyncio.to_thread(_exercise, replica, known)
    assert not failures, "\n\n".join(failures)
    # The generated requests got past the errors too: each operation's success was exercised.
    successes = {name: sorted(code for code in codes if code < 400) for name, codes in seen.items()}
    assert all(successes.values()) and len(successes) == len(DOCUMENTED), seen


class Known:
    """Real ids to use in some generated requests, so they reach past the 404s."""

    def __init__(self, agent_ids: list[str], job_id: str) -> None:
        self.agent_ids = agent_ids
        self.job_id = job_id


def _exercise(replica: Replica, known: Known) -> tuple[list[str], dict[str, set[int]]]:
    schema = schemathesis.openapi.from_url(f"{replica.base}/schema/openapi.json")
    failures: list[str] = []
    seen: dict[str, set[int]] = {}
    dashboard = {"Authorization": f"Bearer {token_for(OWNER)}"}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    credentials = {
        "list_agents": dashboard,
        "get_instance": dashboard,
        "agent_events": dashboard,
        "create_agent": admin,
        "provision_agent": admin,
        "github_callback": {},
        "health": {},
        "liveness": {},
        "readiness": {},
        "metrics": {},
    }
    for result in schema.get_all_operations():
        operation = result.ok()
        raw = operation.definition.raw
        name = raw["operationId"]
        # An operation that takes nothing (no parameters, body or required credentials) has no
        # invalid request.
        security = raw.get("security") or []
        takes_input = bool(raw.get("parameters") or raw.get("requestBody") or (security and {} not in security))
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if takes_input else (GenerationMode.POSITIVE,)
        for mode in modes:
            negative = mode is GenerationMode.NEGATIVE
            checks = [*CHECKS, negative_data_rejection] if negative else CHECKS
            # Real ids only in valid requests: swapped into an invalid one, they could make it valid.
            ids = None if negative else known
            cases = operation.as_strategy(generation_mode=mode)
            run = _runner(replica.base, cases, credentials[name], ids, checks, seen.setdefault(name, set()))
            try:
                run()
            except Exception as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return failures, seen


def _runner(
    base: str,
    cases: st.SearchStrategy[Any],
    headers: dict[str, str],
    known: Known | None,
    checks: list[Any],
    seen: set[int],
) -> Callable[[], None]:
    session = requests.Session()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, real_ids=st.booleans(), which=st.integers(0, 2), signed=st.booleans(), standard=st.booleans())
    def run(case: Any, real_ids: bool, which: int, signed: bool, standard: bool) -> None:
        if known is not None and real_ids and case.path_parameters and "agent_id" in case.path_parameters:
            case.path_parameters["agent_id"] = known.agent_ids[which]
        if known is not None and real_ids and isinstance(case.body, dict) and "job_id" in case.body:
            case.body["job_id"] = known.job_id
        kwargs = case.as_transport_kwargs(base_url=base, headers=headers)
        if case.operation.definition.raw["operationId"] == "github_callback":
            # Signed over the exact bytes sent, as a workflow does; unsigned ones must get their 401.
            raw = json.dumps(kwargs.pop("json", None)).encode() if "json" in kwargs else kwargs.pop("data", b"")
            raw = raw if isinstance(raw, bytes) else str(raw).encode()
            kwargs["data"] = raw
            kwargs["headers"] = {**kwargs.get("headers", {}), "Content-Type": "application/json"}
            if signed:
                # The credential headers schemathesis generated (any scheme's) make way for a real signature.
                kwargs["headers"] = {
                    name: value for name, value in kwargs["headers"].items() if name.lower() not in CREDENTIAL_HEADERS
                }
                if known is not None:
                    # NUL cannot be stored (Postgres text) and is refused with a 400 wherever it is, even
                    # deep in metadata: taken out of valid requests so that some get through.
                    raw = raw.replace(b"\\u0000", b"")
                    kwargs["data"] = raw
                if standard and _is_text(raw):
                    # Standard Webhooks (which signs text): webhook-id is the delivery id, so the generated
                    # one (valid or not) is it.
                    given_id = kwargs["headers"].get("X-GitHub-Delivery") or kwargs["headers"].get("Idempotency-Key")
                    webhook_id = given_id if given_id is not None else f"msg_{uuid.uuid4().hex}"
                    kwargs["headers"].update(
                        sign_standard(standard_webhook(WEBHOOK_SECRET), webhook_id, int(time.time()), raw)
                    )
                else:
                    kwargs["headers"]["X-Hub-Signature-256"] = sign(WEBHOOK_SECRET, raw)
        response = session.request(**kwargs, timeout=10)
        seen.add(response.status_code)
        case.validate_response(response, checks=checks)

    return run


def _is_text(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True
