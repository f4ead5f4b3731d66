"""`status-hub simulate` and `status-hub demo` as a user runs them: separate processes, real HTTP."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest

from tests.support.api import Api
from tests.support.process import CLI_TIMEOUT, demo_process, kit_environment, run_cli
from tests.support.ws import next_status, open_socket

pytestmark = pytest.mark.e2e


def entries(directory: Path) -> list[Path]:
    return list(directory.iterdir())


async def test_simulate_sends_a_whole_signed_workflow(api: Api, hub_url: str, owner: str) -> None:
    agent_id, job_id = await api.new_job(owner)
    code, out, err = await run_cli("simulate", "--url", hub_url, "--job", job_id, "--delay", "0", env=kit_environment())
    assert code == 0, err
    lines = out.splitlines()
    expected = ["provisioning", "vm_created", "network_configured", "ansible_started", "ansible_complete", "running"]
    assert [line.split()[0] for line in lines] == expected
    assert [json.loads(line.split(maxsplit=2)[2])["version"] for line in lines] == [2, 3, 4, 5, 6, 7]
    status = (await api.status(agent_id, owner)).json()
    assert status["status"] == "running"
    assert re.fullmatch(r"10\.0\.\d+\.\d+", status["metadata"]["ip_address"])
    assert [step["state"] for step in status["steps"]] == ["completed"] * 5


async def test_simulate_fail_at_reports_the_failure_on_that_step(api: Api, hub_url: str, owner: str) -> None:
    agent_id, job_id = await api.new_job(owner)
    args = ("--fail-at", "ansible_started", "--error", "Ansible failed: host unreachable.", "--delay", "0")
    code, out, err = await run_cli("simulate", "--url", hub_url, "--job", job_id, *args, env=kit_environment())
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()][-1] == "failed"
    status = (await api.status(agent_id, owner)).json()
    assert (status["status"], status["currentStep"]) == ("failed", "ansible_started")
    assert status["error"] == "Ansible failed: host unreachable."
    assert [step["state"] for step in status["steps"]] == ["completed"] * 3 + ["error", "pending"]


async def test_simulate_can_send_one_step(api: Api, hub_url: str, owner: str) -> None:
    agent_id, job_id = await api.new_job(owner)
    code, out, err = await run_cli(
        "simulate", "--url", hub_url, "--job", job_id, "--step", "vm_created", env=kit_environment()
    )
    assert code == 0, err
    assert len(out.splitlines()) == 1
    status = (await api.status(agent_id, owner)).json()
    assert (status["currentStep"], status["version"]) == ("vm_created", 2)


async def test_simulate_fails_when_the_hub_applied_none_of_it(api: Api, hub_url: str, owner: str) -> None:
    _, job_id = await api.new_job(owner)
    await api.callback({"job_id": job_id, "status": "provisioning", "step": "ansible_started"})
    # An earlier step: acknowledged, but progress never moves backwards.
    code, out, err = await run_cli(
        "simulate", "--url", hub_url, "--job", job_id, "--step", "vm_created", env=kit_environment()
    )
    assert code == 1
    assert '"applied":false' in out
    assert "applied none of the 1 callbacks" in err


@pytest.mark.parametrize(
    ("secret", "code", "says"),
    [(None, 2, "HUB_WEBHOOK_SECRET is not set"), ("not-the-hubs-secret-at-all", 1, "401")],
    ids=["no-secret", "wrong-secret"],
)
async def test_simulate_without_the_right_secret_changes_nothing(
    api: Api, hub_url: str, owner: str, secret: str | None, code: int, says: str
) -> None:
    agent_id, job_id = await api.new_job(owner)
    returned, out, err = await run_cli("simulate", "--url", hub_url, "--job", job_id, env=kit_environment(secret))
    assert returned == code
    assert says in out + err
    assert (await api.status(agent_id, owner)).json()["version"] == 1


async def test_the_demo_runs_workflows_a_dashboard_sees(tmp_path: Path) -> None:
    async with demo_process(tmp_path) as demo:
        command = (await demo.until_printed(r"[^\n]* simulate --url [^\n]*"))[0]
        # The printed command runs as printed, from any directory, without the venv on PATH.
        env = {k: v for k, v in kit_environment(None).items() if k != "PATH"} | {"PATH": "/usr/bin:/bin"}
        simulated = await asyncio.create_subprocess_shell(
            command.strip() + " --step vm_created", env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        said, _ = await asyncio.wait_for(simulated.communicate(), CLI_TIMEOUT)
        assert simulated.returncode == 0, said.decode()
        async with httpx.AsyncClient(base_url=demo.base, timeout=10.0) as client:
            page = await client.get("/")
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            listed = await client.get("/api/agents", headers={"Authorization": f"Bearer {demo.token}"})
            agents = listed.json()
            assert len(agents) >= 4
        ids = [agent["id"] for agent in agents]
        auth = {"Authorization": f"Bearer {demo.token}"}
        async with open_socket(demo.base, "/api/ws", owner=None, headers=auth) as ws:
            await ws.send(json.dumps({"type": "subscribe", "agentIds": ids}))
            async with asyncio.timeout(30):
                while (await next_status(ws, timeout=30))["status"] == "pending":
                    pass  # snapshots of queued agents; wait for a workflow to move one
    assert demo.process.returncode == 0, "".join(demo.printed) + demo.rest
    assert "Demo stopped" in demo.rest
    assert not entries(tmp_path), "The demo must leave nothing in the working directory."
