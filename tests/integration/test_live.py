"""Websocket delivery on one hub: snapshots, versions, auth, subscribe/unsubscribe, pings."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import jwt
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.settings import Settings
from tests.support.api import token_for
from tests.support.config import ALLOWED_ORIGIN
from tests.support.live import LiveHub, live_hub
from tests.support.waiting import wait_until
from tests.support.ws import close_code, next_frame, next_status, open_socket, until_version


@pytest.fixture
async def live(settings: Settings, clean_db: AsyncEngine) -> AsyncIterator[LiveHub]:
    async with live_hub(settings, ping_interval=0.5) as running:
        yield running


async def test_a_socket_gets_the_snapshot_then_every_newer_version(live: LiveHub) -> None:
    base, _, api = live
    agent_id, job_id = await api.new_job()
    async with open_socket(base, f"/api/agents/{agent_id}/instance/ws") as ws:
        assert (await next_status(ws))["version"] == 1
        for step in ("vm_created", "network_configured", "ansible_started", "ansible_complete"):
            await api.callback({"job_id": job_id, "status": "provisioning", "step": step})
            status = await next_status(ws)
            assert status["currentStep"] == step
        await api.callback({"job_id": job_id, "status": "running", "metadata": {"ip_address": "10.1.2.3"}})
        final = await next_status(ws)
    assert final["status"] == "running"
    assert final["version"] == 6
    assert [step["state"] for step in final["steps"]] == ["completed"] * 5


async def test_a_client_that_has_the_current_version_gets_nothing_until_the_next(live: LiveHub) -> None:
    base, _, api = live
    agent_id, job_id = await api.new_job()
    current = await api.heartbeat(job_id)
    async with open_socket(base, f"/api/agents/{agent_id}/instance/ws?version={current}") as ws:
        # The ping proves the subscription is live and that no snapshot came first.
        ping = await next_frame(ws, "ping")
        assert ping["versions"] == {agent_id: current}
        newer = await api.heartbeat(job_id)
        assert (await next_status(ws))["version"] == newer


async def test_a_client_behind_gets_exactly_one_snapshot(live: LiveHub) -> None:
    base, _, api = live
    agent_id, job_id = await api.new_job()
    for _ in range(3):
        latest = await api.heartbeat(job_id)
    async with open_socket(base, f"/api/agents/{agent_id}/instance/ws?version=1") as ws:
        assert (await next_status(ws))["version"] == latest
        ping = await next_frame(ws, "ping")  # no second status before the next ping
        assert ping["versions"] == {agent_id: latest}


async def test_the_dashboard_socket_subscribes_and_unsubscribes(live: LiveHub) -> None:
    base, hub, api = live
    first, first_job = await api.new_job()
    second, second_job = await api.new_job()
    async with open_socket(base, "/api/ws") as ws:
        await ws.send(json.dumps({"type": "subscribe", "agentIds": [first, second]}))
        snapshots = {(await next_status(ws))["agentId"] for _ in range(2)}
        assert snapshots == {first, second}

        await ws.send(json.dumps({"type": "unsubscribe", "agentIds": [first]}))
        await next_frame(ws, "ping")  # the unsubscribe has been handled by then
        await api.heartbeat(first_job)
        second_version = await api.heartbeat(second_job)
        status = await next_status(ws)
        assert (status["agentId"], status["version"]) == (second, second_version)
        ping = await next_frame(ws, "ping")
        assert set(ping["versions"]) == {second}
    await wait_until(lambda: not hub.agent_channels, what="the closed socket's channels to be released")


@pytest.mark.parametrize(
    ("frame", "code", "word"),
    [
        ("{not json", 4400, "JSON"),
        (json.dumps({"type": "dance"}), 4400, "type"),
        (json.dumps({"type": "subscribe", "agentIds": "x"}), 4400, "agentIds"),
    ],
    ids=["malformed", "unknown-type", "mistyped-ids"],
)
async def test_a_bad_client_frame_gets_an_error_frame_and_the_socket_stays(
    live: LiveHub, frame: str, code: int, word: str
) -> None:
    base, _, api = live
    agent_id, _ = await api.new_job()
    async with open_socket(base, "/api/ws") as ws:
        await ws.send(frame)
        error = await next_frame(ws, "error")
        assert error["code"] == code and word in error["message"]
        await ws.send(json.dumps({"type": "subscribe", "agentIds": [agent_id]}))
        assert (await next_status(ws))["agentId"] == agent_id


async def test_a_client_frame_over_64_kib_is_refused_before_it_is_buffered(live: LiveHub) -> None:
    base, hub, _ = live
    # The client's own limit must not stop it from sending the oversized frame.
    async with open_socket(base, "/api/ws", max_size=None) as ws:
        await wait_until(lambda: len(hub.sockets) == 1, what="the socket to be served")
        await ws.send("x" * (1024 * 1024))
        assert await close_code(ws) == 1009  # message too big, from the frame's header
    await wait_until(lambda: not hub.sockets, what="the socket to be released")


@pytest.mark.parametrize("path", ["/api/ws", "/instance/ws"], ids=["dashboard", "single-agent"])
async def test_a_socket_is_closed_with_4401_when_its_token_expires(live: LiveHub, path: str) -> None:
    base, hub, api = live
    agent_id, _ = await api.new_job()
    token = token_for("owner-1", ttl_seconds=2)
    expires_at = jwt.decode(token, options={"verify_signature": False})["exp"]
    if path == "/instance/ws":
        path = f"/api/agents/{agent_id}/instance/ws"
    async with open_socket(base, path, owner=None, headers={"Authorization": f"Bearer {token}"}) as ws:
        if path == "/api/ws":
            await ws.send(json.dumps({"type": "subscribe", "agentIds": [agent_id]}))
        await next_status(ws)
        # Bounded by the token's remaining life plus the one second the contract allows (and a margin).
        code = await close_code(ws, timeout=expires_at - time.time() + 1.5)
        reason = ws.close_reason
    assert code == 4401
    assert reason is not None and "expired" in reason
    assert time.time() >= expires_at  # not before its time
    await wait_until(lambda: not hub.sockets, what="the socket to be released")


async def test_the_dashboard_socket_refuses_other_owners_and_unknown_agents(live: LiveHub) -> None:
    base, hub, api = live
    mine, _ = await api.new_job("owner-1")
    theirs, _ = await api.new_job("owner-2")
    unknown = "00000000-0000-0000-0000-000000000000"
    async with open_socket(base, "/api/ws") as ws:
        await ws.send(json.dumps({"type": "subscribe", "agentIds": [theirs, unknown, mine]}))
        errors = {}
        for _ in range(2):
            error = await next_frame(ws, "error")
            errors[error["agentId"]] = error["code"]
        assert errors == {theirs: 4403, unknown: 4404}
        assert (await next_status(ws))["agentId"] == mine
        assert hub.agent_channels == frozenset({hub.channel(mine)})


async def test_resubscribing_a_watched_agent_costs_no_query(live: LiveHub) -> None:
    base, hub, api = live
    agent_id, _ = await api.new_job()
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    async with open_socket(base, "/api/ws") as ws:
        await ws.send(json.dumps({"type": "subscribe", "agentIds": [agent_id]}))
        await next_status(ws)
        event.listen(hub.engine.sync_engine, "before_cursor_execute", count)
        try:
            for _ in range(30):
                await ws.send(json.dumps({"type": "subscribe", "agentIds": [agent_id], "versions": {agent_id: 1}}))
            await ws.send("not json")  # frames are handled in order: its error means all were handled
            assert (await next_frame(ws, "error"))["code"] == 4400
        finally:
            event.remove(hub.engine.sync_engine, "before_cursor_execute", count)
    assert statements == []


async def test_a_client_frame_flood_is_closed_with_1008(live: LiveHub) -> None:
    base, _, api = live
    agent_id, _ = await api.new_job()
    async with open_socket(base, "/api/ws") as ws:
        frame = json.dumps({"type": "subscribe", "agentIds": [agent_id]})
        for _ in range(200):
            await ws.send(frame)
        assert await close_code(ws) == 1008


async def test_a_frame_of_many_refused_ids_draws_one_error_frame(live: LiveHub) -> None:
    base, _, api = live
    mine, _ = await api.new_job()
    unknown = [str(uuid.uuid4()) for _ in range(1_000)]
    async with open_socket(base, "/api/ws") as ws:
        await ws.send(json.dumps({"type": "subscribe", "agentIds": unknown}))
        error = await next_frame(ws, "error")
        assert (error["code"], sorted(error["agentIds"]), error["agentId"]) == (4404, sorted(unknown), None)
        await ws.send("not json")
        assert (await next_frame(ws, "error"))["code"] == 4400  # the next error is this one's: no more 4404s
        await ws.send(json.dumps({"type": "subscribe", "agentIds": [mine]}))
        assert (await next_status(ws))["agentId"] == mine


async def test_subscribing_new_agents_too_fast_is_refused_with_4429(live: LiveHub) -> None:
    base, _, api = live
    mine, _ = await api.new_job()
    async with open_socket(base, "/api/ws") as ws:
        await ws.send(json.dumps({"type": "subscribe", "agentIds": [str(uuid.uuid4()) for _ in range(1_000)]}))
        assert (await next_frame(ws, "error"))["code"] == 4404  # each new id costs a little of the budget
        await ws.send(json.dumps({"type": "subscribe", "agentIds": [str(uuid.uuid4()) for _ in range(1_000)]}))
        error = await next_frame(ws, "error")
        assert error["code"] == 4429 and "too fast" in error["message"]
        # The budget refills with time (20 frames a second): the same socket may subscribe again soon.
        async with asyncio.timeout(10):
            while True:
                await ws.send(json.dumps({"type": "subscribe", "agentIds": [mine]}))
                frame = json.loads(await ws.recv())
                if frame["type"] == "status":
                    break
                assert frame["type"] in ("error", "ping") and frame.get("code") in (4429, None)
                await asyncio.sleep(0.5)  # let the budget refill between tries


async def test_socket_auth_refusals_have_documented_close_codes(live: LiveHub) -> None:
    base, _, api = live
    mine, _ = await api.new_job("owner-1")
    theirs, _ = await api.new_job("owner-2")
    path = f"/api/agents/{mine}/instance/ws"
    cases = [
        (open_socket(base, path, owner=None), 4401),
        (open_socket(base, path, owner=None, headers={"Authorization": "Bearer nonsense"}), 4401),
        (open_socket(base, f"/api/agents/{theirs}/instance/ws"), 4403),
        (open_socket(base, "/api/agents/00000000-0000-0000-0000-000000000000/instance/ws"), 4404),
        (open_socket(base, path, origin="http://evil.test"), 4403),
        (open_socket(base, "/api/ws", owner=None), 4401),
    ]
    for connection, expected in cases:
        async with connection as ws:
            assert await close_code(ws) == expected


async def test_browsers_authenticate_with_a_subprotocol_or_a_cookie_from_an_allowed_origin(live: LiveHub) -> None:
    base, _, api = live
    agent_id, _ = await api.new_job("owner-1")
    path = f"/api/agents/{agent_id}/instance/ws"
    token = token_for("owner-1")
    async with open_socket(
        base, path, owner=None, subprotocols=["status-hub.v1", f"bearer.{token}"], origin=base
    ) as ws:
        assert ws.subprotocol == "status-hub.v1"
        assert (await next_status(ws))["agentId"] == agent_id
    cookie = {"Cookie": f"status_hub_token={token}"}
    async with open_socket(base, path, owner=None, headers=cookie, origin=ALLOWED_ORIGIN) as ws:
        assert (await next_status(ws))["agentId"] == agent_id
    async with open_socket(base, path, owner=None, headers=cookie, origin="http://evil.test") as ws:
        assert await close_code(ws) == 4403


async def test_idle_sockets_get_pings_with_their_versions(live: LiveHub) -> None:
    base, _, api = live
    agent_id, _ = await api.new_job()
    async with open_socket(base, "/api/ws") as ws:
        assert (await next_frame(ws, "ping"))["versions"] == {}
        await ws.send(json.dumps({"type": "subscribe", "agentIds": [agent_id], "versions": {agent_id: 1}}))
        ping = await next_frame(ws, "ping")
        assert ping["versions"] == {agent_id: 1}


async def test_many_sockets_on_one_agent_all_end_on_the_latest_version(live: LiveHub) -> None:
    base, hub, api = live
    agent_id, job_id = await api.new_job()
    sockets = [await open_socket(base, f"/api/agents/{agent_id}/instance/ws") for _ in range(50)]
    try:
        for ws in sockets:
            assert (await next_status(ws))["version"] == 1
        assert hub.broker.subscriber_count(hub.channel(agent_id)) == 50
        for _ in range(5):
            latest = await api.heartbeat(job_id)
        for ws in sockets:
            seen = await until_version(ws, latest)
            assert seen == sorted(set(seen)), "versions must strictly rise"
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))


async def test_ids_are_matched_in_canonical_form(live: LiveHub) -> None:
    base, hub, api = live
    agent_id, job_id = await api.new_job()
    async with open_socket(base, "/api/ws") as ws:
        shouted = agent_id.upper()
        await ws.send(json.dumps({"type": "subscribe", "agentIds": [shouted], "versions": {shouted: 1}}))
        newer = await api.heartbeat(job_id)
        # The known version was honoured (no snapshot of v1), and the next version arrives.
        assert (await next_status(ws))["version"] == newer
        await ws.send(json.dumps({"type": "unsubscribe", "agentIds": [shouted]}))
        assert (await next_frame(ws, "ping"))["versions"] == {}
    await wait_until(lambda: not hub.agent_channels, what="the channel to be released")


async def test_an_unreachable_database_refuses_subscriptions_but_keeps_the_socket(settings: Settings) -> None:
    broken = {"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/none", "ping_interval": 0.5}
    async with live_hub(settings, **broken) as (base, _, _), open_socket(base, "/api/ws") as ws:
        agent_id = "00000000-0000-0000-0000-00000000000a"
        await ws.send(json.dumps({"type": "subscribe", "agentIds": [agent_id]}))
        error = await next_frame(ws, "error")
        assert (error["agentId"], error["code"]) == (agent_id, 4503)
        assert "unavailable" in error["message"]
        assert (await next_frame(ws, "ping"))["versions"] == {}


async def test_an_exhausted_pool_refuses_subscriptions_as_busy_not_as_a_database_outage(settings: Settings) -> None:
    async with live_hub(settings, db_pool_size=1) as (base, hub, api), AsyncExitStack() as held:
        agent_id, _ = await api.new_job()
        # Every connection of the main pool (1, and as many overflow) taken, as a burst of callbacks would.
        for _ in range(2):
            await held.enter_async_context(hub.engine.connect())
        async with open_socket(base, "/api/ws") as ws:
            await ws.send(json.dumps({"type": "subscribe", "agentIds": [agent_id]}))
            error = await next_frame(ws, "error", timeout=30)
            assert (error["agentId"], error["code"]) == (agent_id, 4503)
            assert "busy" in error["message"] and "database" not in error["message"]
