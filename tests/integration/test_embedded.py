"""Smoke test of the embedded default: `status-hub serve` with nothing configured, as a newcomer runs it."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import httpx

from tests.support.process import hub_process
from tests.support.ws import next_status, open_socket


async def test_the_embedded_default_runs_with_nothing_configured(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    async with hub_process(env, cwd=tmp_path) as replica:
        base = replica.base
        # The banner is printed before the server starts, so it is complete once /healthz answers.
        banner = replica.printed()
        assert "embedded default" in banner
        secrets = dict(re.findall(r"(HUB_[A-Z_]+)=(\S+)", banner))
        token = re.search(r"#token=(\S+)", banner)
        assert token is not None and set(secrets) == {"HUB_WEBHOOK_SECRET", "HUB_JWT_SECRET", "HUB_ADMIN_TOKEN"}
        admin = {"Authorization": f"Bearer {secrets['HUB_ADMIN_TOKEN']}"}
        async with httpx.AsyncClient(base_url=base) as client:
            agent = (
                await client.post("/api/agents", json={"ownerId": "demo-owner", "name": "a"}, headers=admin)
            ).json()
            job_id = (await client.post(f"/api/agents/{agent['id']}/provision", headers=admin)).json()["jobId"]
            async with open_socket(base, "/api/ws", owner=None, headers={"Authorization": f"Bearer {token[1]}"}) as ws:
                await ws.send(json.dumps({"type": "subscribe", "agentIds": [agent["id"]]}))
                assert (await next_status(ws))["status"] == "pending"
                # The banner's own recipe, run as printed: a callback signed with Standard Webhooks by openssl.
                recipe = banner.split("Send a signed workflow callback", 1)[1].split("\n\n", 1)[0]
                script = "\n".join(line.strip() for line in recipe.splitlines()[1:]).replace("<jobId>", job_id)
                shell = await asyncio.create_subprocess_exec(
                    "bash", "-euo", "pipefail", "-c", script, stdout=asyncio.subprocess.PIPE
                )
                answered, _ = await asyncio.wait_for(shell.communicate(), 30)
                assert json.loads(answered) == {"received": True, "applied": True, "version": 2}, script
                pushed = await next_status(ws)
            assert pushed["currentStep"] == "vm_created"
            health = (await client.get("/healthz")).json()
            assert health["broker"] == "memory" and health["database"] == "ok"
    assert (tmp_path / "status-hub.db").exists()
