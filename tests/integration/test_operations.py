"""What an operator runs the hub with: /metrics, /livez and /readyz, on in-process hubs and real
processes (one, and --workers 2)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from channels import Broker, MemoryBackend
from hub.domain.frames import status_frame
from hub.runtime.canary import CANARY_MAX_AGE, Canary
from hub.settings import Settings
from tests.support.api import Api
from tests.support.config import ADMIN_TOKEN
from tests.support.live import live_hub
from tests.support.process import hub_environment, hub_process
from tests.support.redis_server import RedisServer
from tests.support.scrape import Samples, metrics_of, value
from tests.support.waiting import wait_until
from tests.support.ws import next_status, open_socket

REQUIRED_METRICS = {
    "statushub_callbacks",
    "statushub_callback_duration_seconds",
    "statushub_delivery_lag_seconds",
    "statushub_sockets",
    "statushub_subscriptions",
    "statushub_frames_sent",
    "statushub_slow_socket_closes",
    "statushub_resyncs",
    "statushub_reconcile_repairs",
    "statushub_silent_workflows",
    "statushub_publish_failures",
    "statushub_publish_backlog",
    "statushub_redis_connected",
    "statushub_db_pool_checked_out",
    "statushub_http_requests",
    "statushub_http_request_duration_seconds",
}


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    names, samples = await metrics_of(client, **headers)
    assert names >= REQUIRED_METRICS, REQUIRED_METRICS - names
    return samples


async def test_metrics_move_as_callbacks_and_sockets_flow(settings: Settings, clean_db: AsyncEngine) -> None:
    async with live_hub(settings) as (base, hub, api):
        client = api.client
        before = await scrape(client)
        agent_id, job_id = await api.new_job()
        path = f"/api/agents/{agent_id}/instance/ws"
        async with open_socket(base, path) as ws, open_socket(base, "/api/ws") as other:
            await other.send(json.dumps({"type": "subscribe", "agentIds": [agent_id]}))
            assert (await next_status(ws))["version"] == (await next_status(other))["version"] == 1
            delivery = str(uuid.uuid4())
            first = await api.callback({"job_id": job_id, "status": "provisioning"}, delivery=delivery)
            assert first.status_code == 200
            assert (
                (await next_status(ws))["version"] == (await next_status(other))["version"] == first.json()["version"]
            )
            assert (
                await api.callback({"job_id": job_id, "status": "provisioning"}, delivery=delivery)
            ).status_code == 200
            assert (await api.callback({"job_id": job_id, "status": "provisioning"})).json()["applied"] is False
            assert (await api.callback({"job_id": job_id}, signature="sha256=00")).status_code == 401
            assert (await api.callback({"job_id": job_id, "status": "nope"})).status_code == 422
            assert (await api.callback({"job_id": "no-such-job", "status": "running"})).status_code == 404
            assert (await api.status(agent_id)).status_code == 200
            # The change's frame was written: its lag observed once, after the fan-out.
            await wait_until(lambda: hub.metrics.delivery_lag._sum.get() > 0, what="the delivery lag to be observed")
            after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    for outcome, count in {"applied": 1, "duplicate": 1, "unchanged": 1, "unauthorized": 1, "invalid": 1}.items():
        assert delta("statushub_callbacks_total", outcome=outcome) == count, outcome
    assert delta("statushub_callbacks_total", outcome="not_found") == 1
    assert delta("statushub_callback_duration_seconds_count") == 6
    # One change, two sockets: one observation, at the last write.
    assert value(after, "statushub_delivery_lag_seconds_count") == 1
    assert value(after, "statushub_sockets") == 2
    assert value(after, "statushub_subscriptions") >= 1
    assert value(after, "statushub_frames_sent_total") >= 4  # the snapshots and the change, on each
    assert value(after, "statushub_redis_connected") == 1
    # Routes by template, never by the agent's id.
    route = "/api/agents/{agent_id}/instance"
    assert value(after, "statushub_http_requests_total", route=route, status="200") == 1
    assert not [key for key in after if any(agent_id in label for _, label in key[1])]


async def test_metrics_can_require_a_token(settings: Settings, clean_db: AsyncEngine) -> None:
    token = "metrics-token-0123456789"
    async with live_hub(settings, metrics_token=token) as (_, _, api):
        refused = await api.client.get("/metrics")
        assert refused.status_code == 401 and "HUB_METRICS_TOKEN" in refused.json()["detail"]
        assert (await api.client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})).status_code == 401
        await scrape(api.client, Authorization=f"Bearer {token}")


async def test_workers_metrics_are_summed_over_the_workers(settings: Settings, clean_db: AsyncEngine) -> None:
    async with (
        hub_process(hub_environment(settings), "--workers", "2") as replica,
        httpx.AsyncClient(base_url=replica.base) as first,
        httpx.AsyncClient(base_url=replica.base) as second,
    ):
        _, job_id = await Api(first).new_job()
        sent = 20
        # New connections spread over the workers; each scrape must still count every callback.
        for _ in range(sent):
            async with httpx.AsyncClient(base_url=replica.base) as fresh:
                assert (await Api(fresh).heartbeat(job_id)) > 0
        totals = set()
        for client in (first, second, first, second):
            samples = await scrape(client)
            totals.add(value(samples, "statushub_callbacks_total", outcome="applied"))
        assert totals == {sent}


async def test_liveness_depends_on_nothing_and_readiness_names_each_check(settings: Settings) -> None:
    broken = {"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/none"}
    async with live_hub(settings, **broken) as (_, _, api):
        assert (await api.client.get("/livez")).json() == {"status": "ok"}
        ready = await api.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not ready" and ready.json()["database"] == "unavailable"


async def test_ready_once_the_canary_comes_back_and_not_while_redis_is_silent(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    async with RedisServer() as redis, live_hub(settings, redis_url=redis.url) as (_, hub, api):

        async def readiness() -> tuple[int, dict[str, object]]:
            response = await api.client.get("/readyz")
            return response.status_code, response.json()

        await wait_until(lambda: hub.canary.age() is not None, what="the first canary")
        status, body = await readiness()
        assert (status, body["database"], body["broker"], body["canary"]) == (200, "ok", "connected", "ok")
        # A Redis that keeps its connections but answers nothing: the subscriber looks connected.
        redis.pause()
        try:
            await wait_until(
                lambda: (hub.canary.age() or 0) > CANARY_MAX_AGE, timeout=CANARY_MAX_AGE + 10, what="silence"
            )
            status, body = await readiness()
            assert (status, body["canary"]) == (503, "silent")
        finally:
            redis.resume()
        await wait_until(lambda: (hub.canary.age() or 99) < CANARY_MAX_AGE, timeout=20, what="the canary back")
        assert (await readiness())[0] == 200


async def test_the_embedded_broker_is_ready(tmp_path: Path) -> None:
    embedded = Settings.build(database_url=f"sqlite+aiosqlite:///{tmp_path}/hub.db")
    async with live_hub(embedded) as (_, hub, api):
        await wait_until(lambda: hub.canary.age() is not None, what="the first canary")
        response = await api.client.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["broker"] == "connected"


async def test_a_canary_that_stops_coming_back_is_silent() -> None:
    now = [1000.0]
    async with Broker(MemoryBackend(), status_frame) as broker:
        canary = Canary(broker, "test:canary:1", interval=3600, clock=lambda: now[0])
        task = asyncio.create_task(canary.run())
        try:
            await wait_until(lambda: canary.age() is not None, what="the canary")
            assert canary.age() == 0
            now[0] += CANARY_MAX_AGE + 1
            assert (canary.age() or 0) > CANARY_MAX_AGE
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
