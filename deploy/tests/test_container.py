"""The hub's image, run as one container: who it runs as, its health check, a callback reaching a
dashboard's websocket through it, and a graceful stop."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from dockerized import REPORT, SOCKET_TIMEOUT, HubApi, Images, RunningHub, Secrets, inspect, start_hub, subscribe

from tests.support.ws import close_code, next_status

HEALTHCHECK_PROBE = ["/opt/status-hub/venv/bin/python", "-I", "/opt/status-hub/healthcheck.py"]
UNPRIVILEGED = "10001:10001"


def test_the_image_runs_the_hub_as_an_unprivileged_user(images: Images, hub: RunningHub) -> None:
    assert inspect("image", images.hub)["Config"]["User"] == UNPRIVILEGED
    status = hub.container.exec("cat", "/proc/1/status")
    assert status.returncode == 0, status.stderr
    uids = next(line.split()[1:] for line in status.stdout.splitlines() if line.startswith("Uid:"))
    assert uids == ["10001"] * 4
    # PID 1 is the hub itself (the command's shell execs it), so `docker stop`'s SIGTERM reaches it.
    cmdline = hub.container.exec("cat", "/proc/1/cmdline").stdout.split("\0")
    assert "serve" in cmdline and any(part.endswith("/status-hub") for part in cmdline), cmdline
    # The code belongs to root: the hub's user cannot change what it runs.
    assert hub.container.exec("test", "-w", "/opt/status-hub/venv/lib").returncode != 0


def test_the_image_declares_a_healthcheck_on_livez(images: Images, hub: RunningHub) -> None:
    healthcheck = inspect("image", images.hub)["Config"]["Healthcheck"]
    assert healthcheck["Test"] == ["CMD", *HEALTHCHECK_PROBE]
    probe = hub.container.exec("cat", HEALTHCHECK_PROBE[-1]).stdout
    assert 'PATH = "/livez"' in probe
    # The probe's verdict is /livez's: 0 when it answers 200, 1 otherwise (also while a hub without
    # /livez answers 404).
    livez = httpx.get(f"{hub.url}/livez", timeout=5.0).status_code
    verdict = hub.container.exec(*HEALTHCHECK_PROBE)
    assert verdict.returncode == (0 if livez == 200 else 1), (livez, verdict.stderr)
    REPORT.lines.append(f"healthcheck probe: GET /livez answered {livez}, probe exit code {verdict.returncode}")


def test_docker_reports_the_container_healthy(hub: RunningHub) -> None:
    if httpx.get(f"{hub.url}/livez", timeout=5.0).status_code == 404:
        pytest.skip("This hub has no /livez yet; the HEALTHCHECK asks for it.")
    # The image checks every 10 s: a bounded wait for docker's first verdict.
    deadline = time.monotonic() + 30.0
    while (health := hub.container.state()["Health"]["Status"]) == "starting" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert health == "healthy", hub.container.state()["Health"]


async def test_a_signed_callback_reaches_a_dashboard_websocket(hub: RunningHub, hub_secrets: Secrets) -> None:
    async with httpx.AsyncClient(base_url=hub.url, timeout=SOCKET_TIMEOUT) as client:
        api = HubApi(client, hub_secrets)
        agent_id, job_id = await api.new_job("owner-container")
        async with api.dashboard_socket("owner-container") as ws:
            await subscribe(ws, agent_id)
            snapshot = await next_status(ws)
            assert snapshot["status"] == "pending"
            sent = time.monotonic()
            reply = await api.callback({"job_id": job_id, "status": "provisioning", "step": "vm_created"})
            pushed = await next_status(ws)
            latency = time.monotonic() - sent
    assert reply["version"] == snapshot["version"] + 1
    assert (pushed["agentId"], pushed["version"], pushed["currentStep"]) == (agent_id, reply["version"], "vm_created")
    REPORT.lines.append(f"callback to websocket frame through the container: {latency * 1000:.0f} ms")


async def test_docker_stop_closes_sockets_with_1012_and_ends_the_hub_cleanly(
    images: Images, hub_env: dict[str, str], hub_secrets: Secrets, run_id: str
) -> None:
    stopping = start_hub(images.hub, f"status-hub-deploy-{run_id}-stop", run_id=run_id, env=hub_env, host="127.0.0.1")
    try:
        async with httpx.AsyncClient(base_url=stopping.url, timeout=SOCKET_TIMEOUT) as client:
            api = HubApi(client, hub_secrets)
            agent_id, _ = await api.new_job("owner-stop")
            async with api.dashboard_socket("owner-stop") as ws:
                await subscribe(ws, agent_id)
                await next_status(ws)
                started = time.monotonic()
                stop = await asyncio.create_subprocess_exec(
                    "docker", "stop", "--time", "20", stopping.container.name, stdout=asyncio.subprocess.DEVNULL
                )
                code = await close_code(ws, timeout=20.0)
                async with asyncio.timeout(25.0):
                    assert await stop.wait() == 0
                took = time.monotonic() - started
        state = stopping.container.state()
        assert code == 1012
        # Well inside docker's grace period: the hub ended on SIGTERM, it was not killed.
        assert (state["ExitCode"], state["OOMKilled"]) == (0, False)
        assert took < 15.0
        REPORT.lines.append(f"docker stop with an open socket: 1012, exit code 0, {took:.1f} s")
    finally:
        stopping.container.remove()
