"""The GitHub Actions examples' own shell steps, run here with bash, curl, openssl and jq against a real
hub: provision.yml (Standard Webhooks signatures) and provision-oidc.yml (an OIDC token per callback,
minted by a local issuer standing in for the runner's token service, and no secret at all).

A tiny stand-in for the runner: each `run:` script gets the job's environment, RUNNER_TEMP,
GITHUB_OUTPUT and GITHUB_PATH, and `${{ steps.<id>.outputs.<name> }}` in a step's env is resolved
from earlier steps' outputs. That is all the example uses.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.settings import Settings
from tests.support.api import Api
from tests.support.config import WEBHOOK_SECRET
from tests.support.oidc_issuer import (
    AUDIENCE,
    REPOSITORY_ID,
    TOKEN_REQUEST,
    TOKEN_REQUEST_TOKEN,
    oidc_environment,
    oidc_issuer,
)
from tests.support.process import hub_environment, hub_process

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "github-actions"
WORKFLOW = EXAMPLES / "provision.yml"
OIDC_WORKFLOW = EXAMPLES / "provision-oidc.yml"
STEP_TIMEOUT = 30.0
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OWNER = "owner-actions"
_OUTPUT_REF = re.compile(r"\$\{\{\s*steps\.(\w+)\.outputs\.(\w+)\s*\}\}")


def load_steps(workflow: Path = WORKFLOW) -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(workflow.read_text())
    steps: list[dict[str, Any]] = document["jobs"]["provision"]["steps"]
    return {step["name"]: step for step in steps}


class Runner:
    def __init__(self, workdir: Path, hub_url: str, job_id: str, secret: str = WEBHOOK_SECRET, **extra: str) -> None:
        self.temp = workdir
        self.outputs: dict[str, dict[str, str]] = {}
        self.paths: list[str] = []
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(workdir),
            "JOB_ID": job_id,
            "HUB_URL": hub_url,
            **({"HUB_WEBHOOK_SECRET": secret} if secret else {}),
            **extra,
            "RUNNER_TEMP": str(workdir),
            "GITHUB_OUTPUT": str(workdir / "output"),
            "GITHUB_PATH": str(workdir / "path"),
            "GITHUB_RUN_ID": "4242",
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_REPOSITORY": "acme/infra",
        }

    async def run(self, step: dict[str, Any]) -> tuple[int, str]:
        env = dict(self.env)
        env["PATH"] = os.pathsep.join([*self.paths, env["PATH"]])
        for name, value in (step.get("env") or {}).items():
            env[name] = _OUTPUT_REF.sub(lambda ref: self.outputs.get(ref[1], {}).get(ref[2], ""), str(value))
        for file in ("output", "path"):
            (self.temp / file).write_text("")
        process = await asyncio.create_subprocess_exec(
            "bash", "-e", "-c", step["run"],
            env=env, cwd=self.temp, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), STEP_TIMEOUT)
        if "id" in step:
            lines = (self.temp / "output").read_text().splitlines()
            self.outputs[step["id"]] = dict(line.split("=", 1) for line in lines if "=" in line)
        self.paths = [*(self.temp / "path").read_text().split(), *self.paths]
        assert process.returncode is not None
        return process.returncode, out.decode()


async def test_the_example_workflow_provisions_an_agent_step_by_step(
    api: Api, hub_url: str, owner: str, tmp_path: Path
) -> None:
    agent_id, job_id = await api.new_job(owner)
    runner = Runner(tmp_path, hub_url, job_id)
    for name, step in load_steps().items():
        if step.get("if") == "failure()" or "heartbeat" in name.lower():
            continue  # the failure report has its own test; the heartbeat loop never ends
        code, output = await runner.run(step)
        assert code == 0, f"Step {name!r} failed:\n{output}"
    status = (await api.status(agent_id, owner)).json()
    assert status["status"] == "running"
    assert status["version"] == 7, "Expected the start, four steps and running, each applied once."
    assert status["metadata"]["ip_address"] == "10.0.0.7"
    assert status["metadata"]["server_id"] == f"srv-{job_id[:8]}"


async def test_the_failure_step_reports_where_the_workflow_broke(
    api: Api, hub_url: str, owner: str, tmp_path: Path
) -> None:
    agent_id, job_id = await api.new_job(owner)
    steps = load_steps()
    runner = Runner(tmp_path, hub_url, job_id)
    for name in ("Install the callback helper", "Report that provisioning started", "Create the VM"):
        assert (await runner.run(steps[name]))[0] == 0
    # As if the playbook had started and then died.
    (tmp_path / "hub-step").write_text("ansible_started\n")
    (tmp_path / "hub-error").write_text("fatal: [10.0.0.7]: UNREACHABLE! => ssh timed out\n")
    failure = next(step for step in steps.values() if step.get("if") == "failure()")
    code, output = await runner.run(failure)
    assert code == 0, output
    status = (await api.status(agent_id, owner)).json()
    assert (status["status"], status["currentStep"]) == ("failed", "ansible_started")
    assert "UNREACHABLE" in status["error"] and "actions/runs/4242" in status["error"]
    assert [step["state"] for step in status["steps"]][3] == "error"


async def test_the_helper_gives_up_at_once_when_the_hub_refuses(
    api: Api, hub_url: str, owner: str, tmp_path: Path
) -> None:
    agent_id, job_id = await api.new_job(owner)
    steps = load_steps()
    runner = Runner(tmp_path, hub_url, job_id, secret="a-secret-the-hub-does-not-know")
    assert (await runner.run(steps["Install the callback helper"]))[0] == 0
    code, output = await runner.run(steps["Report that provisioning started"])
    assert code == 1
    assert "HTTP 401" in output and "not retrying" in output
    assert (await api.status(agent_id, owner)).json()["version"] == 1


@pytest.mark.parametrize("secret", [WEBHOOK_SECRET, STANDARD_SECRET], ids=["plain-secret", "whsec-secret"])
async def test_the_helper_signs_with_standard_webhooks(settings: Settings, tmp_path: Path, secret: str) -> None:
    # The helper's own signing, checked by a hub whose secret is in either form.
    env = hub_environment(settings, HUB_WEBHOOK_SECRET=secret)
    async with hub_process(env) as replica, httpx.AsyncClient(base_url=replica.base, timeout=10) as client:
        api = Api(client, webhook_secret=secret)
        agent_id, job_id = await api.new_job(OWNER)
        steps = load_steps()
        runner = Runner(tmp_path, replica.base, job_id, secret=secret)
        assert (await runner.run(steps["Install the callback helper"]))[0] == 0
        code, output = await runner.run(steps["Report that provisioning started"])
        assert code == 0, output
        assert (await api.status(agent_id, OWNER)).json()["status"] == "provisioning"


async def test_the_oidc_example_reports_a_whole_provisioning_with_nothing_but_its_token(
    settings: Settings, clean_db: AsyncEngine, tmp_path: Path
) -> None:
    async with oidc_issuer() as issuer:
        # A hub with OIDC only: no webhook secret to copy anywhere.
        env = hub_environment(settings, **oidc_environment(issuer))
        del env["HUB_WEBHOOK_SECRET"]
        async with hub_process(env) as replica, httpx.AsyncClient(base_url=replica.base, timeout=10) as client:
            api = Api(client)
            agent_id, job_id = await api.new_job(OWNER, repository_id=REPOSITORY_ID)
            runner = Runner(
                tmp_path,
                replica.base,
                job_id,
                secret="",
                HUB_OIDC_AUDIENCE=AUDIENCE,
                ACTIONS_ID_TOKEN_REQUEST_URL=f"{issuer.url}{TOKEN_REQUEST}?api-version=2.0",
                ACTIONS_ID_TOKEN_REQUEST_TOKEN=TOKEN_REQUEST_TOKEN,
            )
            steps = load_steps(OIDC_WORKFLOW)
            for name, step in steps.items():
                if step.get("if") == "failure()" or "heartbeat" in name.lower():
                    continue
                code, output = await runner.run(step)
                assert code == 0, f"Step {name!r} failed:\n{output}"
            status = (await api.status(agent_id, OWNER)).json()
            assert (status["status"], status["version"]) == ("running", 7)
            assert status["metadata"]["server_id"] == f"srv-{job_id[:8]}"
            # One token minted per callback, each for the hub's audience.
            assert issuer.requests[TOKEN_REQUEST] == 6
            # The failure report works the same way.
            agent_id, job_id = await api.new_job(OWNER, repository_id=REPOSITORY_ID)
            runner.env["JOB_ID"] = job_id
            (tmp_path / "hub-step").write_text("vm_created\n")
            failure = next(step for step in steps.values() if step.get("if") == "failure()")
            code, output = await runner.run(failure)
            assert code == 0, output
            assert (await api.status(agent_id, OWNER)).json()["status"] == "failed"
