"""What a real `status-hub serve` writes (HUB_LOG_FORMAT): in JSON every line is an object with the
required keys, the lines about a callback carry its ids, and no secret, token or signature the run
used appears anywhere; in text, uvicorn's lines have the hub's format."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.domain.signatures import sign, sign_standard, standard_webhook
from hub.settings import Settings
from tests.support.api import Api, token_for
from tests.support.config import ADMIN_TOKEN, JWT_SECRET, WEBHOOK_SECRET
from tests.support.process import ROOT, Replica, hub_environment, hub_process
from tests.support.waiting import wait_until
from tests.support.ws import next_status, open_socket, until_version

REQUIRED_KEYS = {"ts", "level", "logger", "message", "replica"}
LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
OWNER = "owner-logs"
# A text line: the hub's format, whoever logged it (uvicorn's own "INFO:     ..." lines included).
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


@dataclass
class Traffic:
    agent_id: str = ""
    job_id: str = ""
    # Delivery ids of the signed callbacks, and of the one sent with a bad signature.
    deliveries: list[str] = field(default_factory=list)
    refused_delivery: str = ""
    # Everything that must never reach a log: the secrets, the dashboard token, every signature.
    credentials: list[str] = field(default_factory=list)


async def _drive(base: str) -> Traffic:
    """Admin calls, sockets authenticated the three ways, signed callbacks (one redelivered, one for
    an unknown job, one badly signed) and dashboard polls with a JWT."""
    token = token_for(OWNER)
    traffic = Traffic(credentials=[WEBHOOK_SECRET, JWT_SECRET, ADMIN_TOKEN, token])
    bearer = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        api = Api(client)
        traffic.agent_id, traffic.job_id = await api.new_job(OWNER)
        agent_id, job_id = traffic.agent_id, traffic.job_id
        async with (
            open_socket(base, f"/api/agents/{agent_id}/instance/ws", owner=None, headers=bearer) as by_header,
            open_socket(
                base, "/api/ws", owner=None, subprotocols=["status-hub.v1", f"bearer.{token}"], origin=base
            ) as by_subprotocol,
            open_socket(
                base, "/api/ws", owner=None, headers={"Cookie": f"status_hub_token={token}"}, origin=base
            ) as by_cookie,
            open_socket(base, "/api/ws", owner=None, headers={"Authorization": "Bearer not-a-jwt"}),
        ):
            sockets = (by_header, by_subprotocol, by_cookie)
            for ws in sockets[1:]:
                await ws.send(json.dumps({"type": "subscribe", "agentIds": [agent_id]}))
            for ws in sockets:
                assert (await next_status(ws))["version"] == 1
            bodies: list[dict[str, Any]] = [
                {"job_id": job_id, "status": "provisioning", "step": "vm_created"},
                {"job_id": job_id, "type": "heartbeat"},
                {"job_id": job_id, "status": "running", "metadata": {"ip_address": "10.0.0.9"}},
            ]
            for body in bodies:
                raw = json.dumps(body).encode()
                signature = sign(WEBHOOK_SECRET, raw)
                delivery = str(uuid.uuid4())
                response = await api.callback(raw, delivery=delivery, signature=signature)
                assert response.status_code == 200, response.text
                traffic.deliveries.append(delivery)
                traffic.credentials.append(signature)
            for ws in sockets:
                await until_version(ws, 4)
        redelivered = json.dumps(bodies[0]).encode()
        response = await api.callback(redelivered, delivery=traffic.deliveries[0])
        assert response.json() == {"received": True, "applied": True, "version": 2}
        unknown = json.dumps({"job_id": "no-such-job", "status": "running"}).encode()
        traffic.credentials.append(sign(WEBHOOK_SECRET, unknown))
        assert (await api.callback(unknown, delivery=str(uuid.uuid4()))).status_code == 404
        traffic.refused_delivery = str(uuid.uuid4())
        forged = "sha256=" + sign("not-the-webhook-secret-at-all", redelivered).removeprefix("sha256=")
        traffic.credentials.append(forged)
        response = await api.callback(redelivered, delivery=traffic.refused_delivery, signature=forged)
        assert response.status_code == 401
        # Signed with Standard Webhooks: its signature must not show either.
        heartbeat = json.dumps({"job_id": job_id, "type": "heartbeat"}).encode()
        signed = sign_standard(standard_webhook(WEBHOOK_SECRET), f"msg_{uuid.uuid4().hex}", int(time.time()), heartbeat)
        response = await client.post("/api/webhooks/github", content=heartbeat, headers=signed)
        assert response.status_code == 200, response.text
        traffic.deliveries.append(signed["webhook-id"])
        traffic.credentials += [signed["webhook-signature"], signed["webhook-signature"].removeprefix("v1,")]
        poll = await client.get(f"/api/agents/{agent_id}/instance", headers=bearer)
        assert poll.status_code == 200
        again = await client.get(
            f"/api/agents/{agent_id}/instance", headers={**bearer, "If-None-Match": poll.headers["etag"]}
        )
        assert again.status_code == 304
    return traffic


def _json_lines(output: str) -> list[dict[str, Any]]:
    lines = output.splitlines()
    assert lines, "the hub wrote nothing"
    entries: list[dict[str, Any]] = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"A line of the output is not JSON: {line!r}")
        assert isinstance(entry, dict), line
        assert entry.keys() >= REQUIRED_KEYS, f"missing {REQUIRED_KEYS - entry.keys()} in {line}"
        assert entry["level"] in LEVELS, line
        datetime.fromisoformat(entry["ts"])
        entries.append(entry)
    return entries


def _assert_no_credentials(output: str, traffic: Traffic) -> None:
    for credential in traffic.credentials:
        # A signature also must not show without its prefix.
        for form in {credential, credential.removeprefix("sha256=")}:
            assert form not in output, f"a credential reached the log: {form[:12]}..."


async def _stopped_output(replica: Replica) -> str:
    assert await replica.stop() in (0, -15)  # uvicorn re-raises the SIGTERM once it has shut down
    return replica.printed()


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
async def test_json_logs_are_all_json_carry_callback_ids_and_no_credentials(
    settings: Settings, clean_db: AsyncEngine, workers: int
) -> None:
    env = hub_environment(settings, HUB_LOG_FORMAT="json", HUB_LOG_LEVEL="DEBUG")
    async with hub_process(env, "--workers", str(workers)) as replica:

        def ready_replicas() -> set[str]:
            lines = (json.loads(line) for line in replica.printed().splitlines() if '"Ready in process' in line)
            return {line["replica"] for line in lines}

        # Every worker is serving (and has logged) before the traffic starts.
        await wait_until(lambda: len(ready_replicas()) == workers, timeout=30, what="every worker's Ready line")
        traffic = await _drive(replica.base)
        output = await _stopped_output(replica)

    entries = _json_lines(output)
    _assert_no_credentials(output, traffic)
    loggers = {entry["logger"] for entry in entries}
    assert {"hub.runtime.schema", "hub.app", "hub.http.webhooks", "uvicorn.error", "uvicorn.access"} <= loggers
    if workers > 1:
        # The supervisor and each worker write JSON, each with its own replica id.
        assert len({entry["replica"] for entry in entries}) == workers + 1
    about_callbacks = [entry for entry in entries if entry["logger"] == "hub.http.webhooks"]
    for delivery in traffic.deliveries:
        lines = [entry for entry in about_callbacks if entry.get("delivery_id") == delivery]
        assert lines, f"no line about the callback delivered as {delivery}"
        assert all(entry["job_id"] == traffic.job_id for entry in lines)
        assert all(entry["agent_id"] == traffic.agent_id for entry in lines)
    assert any("redelivered" in entry["message"] for entry in about_callbacks)
    assert any(entry.get("job_id") == "no-such-job" and "404" in entry["message"] for entry in about_callbacks)
    refused = [entry for entry in about_callbacks if entry.get("delivery_id") == traffic.refused_delivery]
    assert refused and "401" in refused[0]["message"] and "job_id" not in refused[0]
    # At DEBUG the websocket protocol logs every handshake header: the token is there, scrubbed.
    assert any(entry["message"] == "< authorization: Bearer [redacted]" for entry in entries)


async def test_text_logs_have_one_format_for_the_hub_and_uvicorn(settings: Settings, clean_db: AsyncEngine) -> None:
    env = hub_environment(settings, HUB_LOG_LEVEL="DEBUG")
    async with hub_process(env) as replica:
        traffic = await _drive(replica.base)
        output = await _stopped_output(replica)
    for line in output.splitlines():
        assert TEXT_LINE.match(line), f"a line not in the hub's format: {line!r}"
    assert re.search(r" INFO uvicorn\.access: .*\"POST /api/webhooks/github HTTP/1\.1\" 200", output)
    assert re.search(rf"Applied a callback .* \[agent_id=\S+ job_id={traffic.job_id} delivery_id=", output)
    _assert_no_credentials(output, traffic)


async def test_the_embedded_banner_is_json_lines_in_json_mode(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    async with hub_process({**env, "HUB_LOG_FORMAT": "json"}, cwd=tmp_path) as replica:
        output = await _stopped_output(replica)
    banner = [entry["message"] for entry in _json_lines(output) if entry["logger"] == "hub.cli.banner"]
    assert any("embedded default" in line for line in banner)
    assert any(line.startswith("HUB_ADMIN_TOKEN=") for line in banner)


async def test_a_configuration_error_is_a_json_line_in_json_mode() -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HUB_LOG_FORMAT": "json",
        "HUB_PING_INTERVAL": "90",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "serve",
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    [entry] = _json_lines(output.decode())
    assert entry["level"] == "ERROR"
    assert "HUB_PING_INTERVAL" in entry["message"]
