"""Reads (auth, ETag/304) and the admin API on the real Postgres."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import Any

import httpx
import jwt
import pytest
from litestar import Litestar
from sqlalchemy import event

from hub.runtime import Hub
from hub.runtime.resources import read_pool_size
from tests.support.api import Api, token_for
from tests.support.config import ADMIN_TOKEN, JWT_SECRET
from tests.support.waiting import wait_until


async def test_conditional_get_answers_304_until_the_version_changes(api: Api) -> None:
    agent_id, job_id = await api.new_job()
    first = await api.status(agent_id)
    tag = first.headers["ETag"]
    assert first.status_code == 200 and tag.startswith('"') and not tag.startswith("W/")

    unchanged = await api.status(agent_id, etag=tag)
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["ETag"] == tag
    assert (await api.status(agent_id, etag=f"W/{tag}")).status_code == 304
    assert (await api.status(agent_id, etag=f'"other", {tag}')).status_code == 304

    await api.callback({"job_id": job_id, "status": "provisioning", "step": "vm_created"})
    changed = await api.status(agent_id, etag=tag)
    assert changed.status_code == 200
    assert changed.headers["ETag"] != tag
    assert changed.json()["version"] == 2


async def test_list_agents_returns_only_the_owners_agents_with_status(api: Api) -> None:
    mine, job_id = await api.new_job("owner-1")
    idle = await api.create_agent("owner-1", name="idle")
    await api.new_job("owner-2")
    response = await api.client.get("/api/agents", headers={"Authorization": f"Bearer {token_for('owner-1')}"})
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, list)
    assert {agent["id"] for agent in body} == {mine, idle["id"]}
    by_id = {agent["id"]: agent for agent in body}
    assert by_id[mine]["status"]["jobId"] == job_id
    assert by_id[idle["id"]]["status"] is None
    assert by_id[mine]["ownerId"] == "owner-1"


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, 401),
        ("Bearer not-a-jwt", 401),
        (f"Bearer {token_for('owner-1', secret='another-secret-of-enough-length-for-hs256')}", 401),
        (f"Bearer {token_for('owner-1', ttl_seconds=-60)}", 401),
        (f"Bearer {jwt.encode({'sub': 'owner-1'}, JWT_SECRET, algorithm='HS256')}", 401),
        (f"Basic {token_for('owner-1')}", 401),
        (f"Bearer {token_for('owner-2')}", 403),
    ],
    ids=["no-token", "garbage", "wrong-secret", "expired", "no-expiry", "wrong-scheme", "other-owner"],
)
async def test_reading_an_agent_needs_its_owners_token(api: Api, authorization: str | None, code: int) -> None:
    agent_id, _ = await api.new_job("owner-1")
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await api.client.get(f"/api/agents/{agent_id}/instance", headers=headers)
    assert response.status_code == code
    assert response.json()["detail"]


@pytest.mark.parametrize("agent_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
async def test_an_unknown_agent_is_404(api: Api, agent_id: str) -> None:
    response = await api.status(agent_id)
    assert response.status_code == 404
    assert agent_id in response.json()["detail"]


async def test_an_agent_never_provisioned_has_no_instance(api: Api) -> None:
    agent = await api.create_agent("owner-1")
    response = await api.status(agent["id"])
    assert response.status_code == 404
    assert "not been provisioned" in response.json()["detail"]


async def test_admin_endpoints_need_the_admin_token(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {token_for('owner-1')}"}):
        response = await api.client.post("/api/agents", json={"ownerId": "o", "name": "n"}, headers=headers)
        assert response.status_code == 401


async def test_provision_returns_the_first_status_and_refuses_a_second_one_in_progress(api: Api) -> None:
    agent = await api.create_agent("owner-1")
    provisioned = await api.provision(agent["id"], job_id="gh-job-42")
    assert provisioned["jobId"] == "gh-job-42"
    assert provisioned["status"]["status"] == "pending"
    assert provisioned["status"]["version"] == 1
    assert provisioned["instanceId"] == provisioned["status"]["instanceId"]
    again = await api.client.post(
        f"/api/agents/{agent['id']}/provision", json={}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert again.status_code == 409
    assert "in progress" in again.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"name": "n"}', "ownerId"),
        (b'{"ownerId": "", "name": "n"}', "ownerId"),
        (b'{"ownerId": 3, "name": "n"}', "ownerId"),
        (b'{"ownerId": "o", "name": "n", "extra": 1}', "extra"),
        (b"{", "JSON"),
    ],
    ids=["missing-owner", "empty-owner", "mistyped-owner", "unknown-field", "malformed"],
)
async def test_create_agent_rejects_bad_bodies_naming_the_field(api: Api, body: bytes, field: str) -> None:
    response = await api.client.post("/api/agents", content=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 400
    assert field in response.json()["detail"]


async def test_tokens_never_reach_the_logs(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    agent_id, _ = await api.new_job("owner-1")
    secret_token = token_for("owner-2")
    await api.client.get(f"/api/agents/{agent_id}/instance", headers={"Authorization": f"Bearer {secret_token}"})
    await api.client.get("/api/agents", headers={"Authorization": "Bearer garbage-token-value"})
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert secret_token not in logged
    assert "garbage-token-value" not in logged
    assert ADMIN_TOKEN not in logged


async def test_unknown_routes_are_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/nothing-here")).status_code == 404


async def test_reads_accept_the_dashboard_cookie(api: Api) -> None:
    agent_id, _ = await api.new_job("owner-1")
    api.client.cookies.set("status_hub_token", token_for("owner-1"))
    try:
        assert (await api.client.get(f"/api/agents/{agent_id}/instance")).status_code == 200
        assert (await api.client.get("/api/agents")).status_code == 200
        api.client.cookies.set("status_hub_token", token_for("owner-2"))
        assert (await api.client.get(f"/api/agents/{agent_id}/instance")).status_code == 403
    finally:
        api.client.cookies.clear()


async def test_pollers_cannot_starve_callbacks_and_a_busy_replica_says_so(api: Api, app: Litestar) -> None:
    hub: Hub = app.state.hub
    agent_id, job_id = await api.new_job()
    async with AsyncExitStack() as held:
        # Every connection of the REST reads' pool taken, as a crowd of pollers would.
        for _ in range(read_pool_size(hub.settings)):
            await held.enter_async_context(hub.reads.connect())
        busy = await api.status(agent_id)
        assert busy.status_code == 503, busy.text
        assert busy.headers["Retry-After"] == "1"
        assert "busy" in busy.json()["detail"] and "database" not in busy.json()["detail"]
        callback = await api.callback({"job_id": job_id, "type": "heartbeat"})  # its own pool
        assert callback.status_code == 200, callback.text
    assert (await api.status(agent_id)).json()["version"] == callback.json()["version"]
    assert hub.metrics.busy_answers >= 1


async def test_a_current_poll_reads_nothing_and_a_changed_one_a_single_statement(api: Api, app: Litestar) -> None:
    hub: Hub = app.state.hub
    agent_id, job_id = await api.new_job()
    tag = (await api.status(agent_id)).headers["ETag"]
    # The first poll starts watching the agent's channel; from then on its version is known here.
    await wait_until(lambda: hub.versions.current(agent_id) is not None, what="the agent to be watched")
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    # REST reads run on their own engine; the main one also serves the hub's timers (the reconcile).
    engines = (hub.reads.sync_engine,)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(5):
            assert (await api.status(agent_id, etag=tag)).status_code == 304
        assert statements == []  # current polls: no database at all
        changed = await api.callback({"job_id": job_id, "type": "heartbeat"})
        newest = changed.json()["version"]
        statements.clear()
        # The callback's publish reaches the cache through the agent's channel.
        await wait_until(lambda: _cached_version(hub, agent_id) == newest, what="the cache to hear the change")
        fresh = await api.status(agent_id, etag=tag)
        assert fresh.status_code == 200 and fresh.json()["version"] == changed.json()["version"]
        listed = await api.client.get("/api/agents", headers={"Authorization": f"Bearer {token_for('owner-1')}"})
        assert listed.status_code == 200
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)
    # One statement each, on an autocommit connection: no BEGIN, no ROLLBACK around it.
    assert len(statements) == 2, statements


def _cached_version(hub: Hub, agent_id: str) -> int | None:
    known = hub.versions.current(agent_id)
    return None if known is None else known[2]
