"""Several hub processes on one Postgres and one Redis: any replica serves any client."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.settings import Settings
from tests.support.api import Api
from tests.support.process import ROOT, hub_environment, hub_process
from tests.support.waiting import wait_until
from tests.support.ws import close_code, next_status, open_socket, until_version

WORKFLOW = [
    {"status": "provisioning"},
    {"status": "provisioning", "step": "vm_created"},
    {"status": "provisioning", "step": "network_configured"},
    {"status": "provisioning", "step": "ansible_started"},
    {"status": "provisioning", "step": "ansible_complete"},
    {"status": "running", "metadata": {"ip_address": "10.0.0.5"}},
]


async def test_callbacks_on_one_replica_reach_a_dashboard_on_another(settings: Settings, clean_db: AsyncEngine) -> None:
    env = hub_environment(settings)
    async with (
        hub_process(env) as first_replica,
        hub_process(env) as second_replica,
        httpx.AsyncClient(base_url=first_replica.base) as client,
    ):
        api = Api(client)
        agent_id, job_id = await api.new_job()
        async with open_socket(second_replica.base, f"/api/agents/{agent_id}/instance/ws") as ws:
            assert (await next_status(ws))["version"] == 1
            seen = []
            for body in WORKFLOW:
                response = await api.callback({"job_id": job_id, **body})
                assert response.status_code == 200
                status = await next_status(ws)
                seen.append((status["version"], status["currentStep"]))
    assert [version for version, _ in seen] == [2, 3, 4, 5, 6, 7]
    assert [step for _, step in seen] == [
        None,
        "vm_created",
        "network_configured",
        "ansible_started",
        "ansible_complete",
        None,
    ]


async def test_workers_share_one_port_and_every_socket_gets_every_update(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    async with (
        hub_process(hub_environment(settings), "--workers", "2") as replica,
        httpx.AsyncClient(base_url=replica.base) as client,
    ):
        api = Api(client)
        agent_id, job_id = await api.new_job()
        sockets = [await open_socket(replica.base, f"/api/agents/{agent_id}/instance/ws") for _ in range(20)]
        try:
            for ws in sockets:
                await next_status(ws)
            for _ in range(3):
                latest = (await api.callback({"job_id": job_id, "type": "heartbeat"})).json()["version"]
            for ws in sockets:
                seen = await until_version(ws, latest)
                assert seen == sorted(set(seen))
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))


async def test_shutdown_closes_sockets_with_1012(settings: Settings, clean_db: AsyncEngine) -> None:
    async with hub_process(hub_environment(settings)) as replica:
        base, process = replica.base, replica.process
        async with httpx.AsyncClient(base_url=base) as client:
            agent_id, _ = await Api(client).new_job()
        async with open_socket(base, f"/api/agents/{agent_id}/instance/ws") as ws:
            await next_status(ws)
            process.send_signal(signal.SIGTERM)
            assert await close_code(ws) == 1012
        # uvicorn re-raises the signal once it has shut down cleanly.
        assert await asyncio.wait_for(process.wait(), 20) in (0, -signal.SIGTERM)


async def test_generated_secrets_refuse_several_workers() -> None:
    # With Redis set (without it, that is what --workers is told first).
    env = {"PATH": "/usr/bin:/bin", "HUB_REDIS_URL": "redis://127.0.0.1:6379/0"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "serve", "--workers", "2",
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert b"HUB_WEBHOOK_SECRET" in stderr and b"each worker" in stderr


async def test_the_in_memory_broker_refuses_several_workers() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HUB_WEBHOOK_SECRET": "w" * 20,
        "HUB_JWT_SECRET": "j" * 32,
        "HUB_ADMIN_TOKEN": "a" * 20,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "serve", "--workers", "2",
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert b"HUB_REDIS_URL" in stderr and b"in-memory broker" in stderr


async def test_every_worker_logs_at_the_configured_level(settings: Settings, clean_db: AsyncEngine) -> None:
    """Each --workers process configures the hub's loggers itself: its INFO lines reach the output."""
    env = hub_environment(settings, HUB_LOG_LEVEL="INFO")
    async with hub_process(env, "--workers", "2") as replica:

        def ready_processes() -> set[int]:
            return {int(pid) for pid in re.findall(r"INFO hub\.app: Ready in process (\d+)", replica.printed())}

        await wait_until(lambda: len(ready_processes()) == 2, timeout=30, what="both workers' INFO lines")
        assert replica.process.pid not in ready_processes()  # the supervisor serves nothing
