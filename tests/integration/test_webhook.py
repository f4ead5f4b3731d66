"""The callback endpoint end to end on the real Postgres: routing, ordering, idempotency, bad input."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.app import create_app
from hub.domain.signatures import sign
from tests.support.api import Api
from tests.support.lifespan import app_running

C, A, P, E = "completed", "active", "pending", "error"


def states(status: dict[str, Any]) -> list[str]:
    return [step["state"] for step in status["steps"]]


async def table_counts(engine: AsyncEngine) -> dict[str, Any]:
    """Everything a bad callback must leave untouched."""
    async with engine.connect() as connection:
        events = (await connection.execute(text("SELECT count(*) FROM callback_events"))).scalar_one()
        instances = (
            await connection.execute(
                text("SELECT id, status, current_step, version, error, metadata FROM agent_instances ORDER BY id")
            )
        ).all()
        jobs = (await connection.execute(text("SELECT id, status, error FROM provisioning_jobs ORDER BY id"))).all()
    return {"events": events, "instances": [tuple(row) for row in instances], "jobs": [tuple(row) for row in jobs]}


async def test_a_whole_workflow_moves_the_status_through_the_design_table(api: Api) -> None:
    agent_id, job_id = await api.new_job()
    first = (await api.status(agent_id)).json()
    assert first["status"] == "pending" and first["version"] == 1
    assert states(first) == [A, P, P, P, P]

    sequence: list[tuple[dict[str, Any], list[str], str | None]] = [
        ({"status": "provisioning"}, [C, A, P, P, P], None),
        ({"status": "provisioning", "step": "vm_created"}, [C, C, A, P, P], "vm_created"),
        ({"status": "provisioning", "step": "network_configured"}, [C, C, A, P, P], "network_configured"),
        ({"status": "provisioning", "step": "ansible_started"}, [C, C, C, A, P], "ansible_started"),
        ({"status": "provisioning", "step": "ansible_complete"}, [C, C, C, C, A], "ansible_complete"),
        ({"status": "running", "metadata": {"ip_address": "10.0.0.7", "server_id": "srv-1"}}, [C] * 5, None),
    ]
    version = 1
    for body, expected, step in sequence:
        response = await api.callback({"job_id": job_id, **body})
        assert response.status_code == 200, response.text
        version += 1
        assert response.json() == {"received": True, "applied": True, "version": version}
        status = (await api.status(agent_id)).json()
        assert states(status) == expected, body
        assert status["currentStep"] == step
        assert status["version"] == version
    assert status["status"] == "running"
    assert status["metadata"] == {"ip_address": "10.0.0.7", "server_id": "srv-1"}
    assert status["jobId"] == job_id and status["agentId"] == agent_id
    assert [step["label"] for step in status["steps"]] == [
        "Queued",
        "Creating Server",
        "Installing Dependencies",
        "Configuring Agent",
        "Running",
    ]


async def test_a_failure_shows_the_error_on_the_step_where_it_failed(api: Api) -> None:
    agent_id, job_id = await api.new_job()
    await api.callback({"job_id": job_id, "status": "provisioning", "step": "ansible_started"})
    response = await api.callback({"job_id": job_id, "status": "failed", "error": "ansible: unreachable host"})
    assert response.json()["applied"] is True
    status = (await api.status(agent_id)).json()
    assert status["status"] == "failed"
    assert status["error"] == "ansible: unreachable host"
    assert status["currentStep"] == "ansible_started"
    assert states(status) == [C, C, C, E, P]
    # The agent is rolled back: it can be provisioned again, and its version keeps rising.
    again = await api.provision(agent_id)
    assert again["status"]["status"] == "pending"
    assert again["status"]["version"] == status["version"] + 1


async def test_a_failure_before_any_step_is_an_error_on_installing_dependencies(api: Api) -> None:
    agent_id, job_id = await api.new_job()
    await api.callback({"job_id": job_id, "status": "failed"})
    status = (await api.status(agent_id)).json()
    assert states(status) == [C, C, E, P, P]
    assert status["error"]


@pytest.mark.parametrize(
    ("after", "late"),
    [
        ("ansible_started", "vm_created"),
        ("ansible_started", "ansible_started"),
        ("network_configured", "vm_created"),
    ],
    ids=["backwards", "same-step", "earlier"],
)
async def test_progress_never_moves_backwards(api: Api, after: str, late: str) -> None:
    agent_id, job_id = await api.new_job()
    await api.callback({"job_id": job_id, "status": "provisioning", "step": after})
    before = (await api.status(agent_id)).json()
    response = await api.callback({"job_id": job_id, "status": "provisioning", "step": late})
    assert response.status_code == 200
    assert response.json() == {"received": True, "applied": False, "version": before["version"]}
    assert (await api.status(agent_id)).json() == before


@pytest.mark.parametrize("terminal", ["running", "failed", "stopped"])
async def test_terminal_states_stay_terminal(api: Api, terminal: str) -> None:
    agent_id, job_id = await api.new_job()
    await api.callback({"job_id": job_id, "status": "provisioning", "step": "vm_created"})
    body: dict[str, Any] = {"job_id": job_id, "status": terminal}
    if terminal == "running":
        body["metadata"] = {"ip_address": "10.0.0.9"}
    assert (await api.callback(body)).json()["applied"] is True
    before = (await api.status(agent_id)).json()
    for late in (
        {"status": "provisioning", "step": "ansible_complete"},
        {"status": "provisioning"},
        {"status": "queued"},
        {"status": "failed", "error": "late failure"} if terminal != "failed" else {"status": "running"},
    ):
        response = await api.callback({"job_id": job_id, **late})
        assert response.status_code == 200
        assert response.json()["applied"] is False, late
    assert (await api.status(agent_id)).json() == before


async def test_a_heartbeat_is_a_visible_change(api: Api) -> None:
    agent_id, job_id = await api.new_job()
    response = await api.callback({"job_id": job_id, "type": "heartbeat"})
    assert response.json() == {"received": True, "applied": True, "version": 2}
    status = (await api.status(agent_id)).json()
    assert status["lastHeartbeatAt"] is not None
    assert status["status"] == "pending"


async def test_a_redelivery_is_answered_as_before_and_applied_once(api: Api, db_engine: AsyncEngine) -> None:
    agent_id, job_id = await api.new_job()
    body = {"job_id": job_id, "status": "provisioning", "step": "vm_created"}
    first = await api.callback(body, delivery="delivery-1")
    # Later progress, then the redelivery of the first callback.
    await api.callback({"job_id": job_id, "status": "provisioning", "step": "ansible_started"}, delivery="delivery-2")
    second = await api.callback(body, delivery="delivery-1")
    assert second.status_code == first.status_code == 200
    assert second.json() == first.json() == {"received": True, "applied": True, "version": 2}
    assert (await api.status(agent_id)).json()["currentStep"] == "ansible_started"
    async with db_engine.connect() as connection:
        count = (
            await connection.execute(text("SELECT count(*) FROM callback_events WHERE delivery_id = 'delivery-1'"))
        ).scalar_one()
    assert count == 1


async def test_idempotency_key_works_like_a_github_delivery(api: Api) -> None:
    agent_id, job_id = await api.new_job()
    raw = json.dumps({"job_id": job_id, "type": "heartbeat"}).encode()
    headers = {"X-Hub-Signature-256": sign(api.webhook_secret, raw), "Idempotency-Key": "key-1"}
    first = await api.client.post("/api/webhooks/github", content=raw, headers=headers)
    second = await api.client.post("/api/webhooks/github", content=raw, headers=headers)
    assert first.json() == second.json() == {"received": True, "applied": True, "version": 2}
    assert (await api.status(agent_id)).json()["version"] == 2


async def test_concurrent_redeliveries_apply_once(api: Api) -> None:
    agent_id, job_id = await api.new_job()
    body = {"job_id": job_id, "type": "heartbeat"}
    responses = await asyncio.gather(*(api.callback(body, delivery="same") for _ in range(8)))
    assert {r.status_code for r in responses} == {200}
    assert {json.dumps(r.json(), sort_keys=True) for r in responses} == {
        json.dumps({"applied": True, "received": True, "version": 2}, sort_keys=True)
    }
    assert (await api.status(agent_id)).json()["version"] == 2


async def test_concurrent_callbacks_for_one_instance_all_apply(api: Api) -> None:
    agent_id, job_id = await api.new_job()
    responses = await asyncio.gather(*(api.callback({"job_id": job_id, "type": "heartbeat"}) for _ in range(20)))
    assert all(r.status_code == 200 and r.json()["applied"] for r in responses)
    assert sorted(r.json()["version"] for r in responses) == list(range(2, 22))
    assert (await api.status(agent_id)).json()["version"] == 21


BAD_INPUT = [
    # (description id, body bytes, signature override, expected status, words the message must contain)
    ("malformed-json", b'{"job_id": ', None, 400, ["JSON"]),
    ("not-an-object", b"[1, 2]", None, 400, ["object"]),
    ("missing-job-id", b'{"status": "provisioning"}', None, 400, ["job_id"]),
    ("mistyped-job-id", b'{"job_id": 7, "status": "provisioning"}', None, 400, ["job_id"]),
    ("empty-job-id", b'{"job_id": " ", "status": "provisioning"}', None, 400, ["job_id"]),
    ("mistyped-metadata", b'{"job_id": "JOB", "status": "running", "metadata": [1]}', None, 400, ["metadata"]),
    ("missing-status", b'{"job_id": "JOB"}', None, 400, ["status"]),
    ("unknown-status", b'{"job_id": "JOB", "status": "exploded"}', None, 422, ["status", "provisioning", "failed"]),
    (
        "unknown-step",
        b'{"job_id": "JOB", "status": "provisioning", "step": "teleported"}',
        None,
        422,
        ["step", "vm_created", "ansible_complete"],
    ),
    ("unknown-type", b'{"job_id": "JOB", "type": "ping"}', None, 422, ["type", "heartbeat"]),
    ("unknown-job", b'{"job_id": "no-such-job", "status": "provisioning"}', None, 404, ["job_id"]),
    ("missing-signature", b'{"job_id": "JOB", "status": "failed"}', "", 401, ["X-Hub-Signature-256"]),
    ("wrong-signature", b'{"job_id": "JOB", "status": "failed"}', "sha256=" + "0" * 64, 401, ["X-Hub-Signature-256"]),
    ("too-large", b'{"job_id": "JOB", "status": "failed", "error": "' + b"x" * 70_000 + b'"}', None, 413, []),
    (
        "deeply-nested-metadata",
        b'{"job_id": "JOB", "status": "running", "metadata": ' + b'{"a":' * 1000 + b"1" + b"}" * 1000 + b"}",
        None,
        400,
        ["nested too deeply"],
    ),
    ("nul-in-error", b'{"job_id": "JOB", "status": "failed", "error": "boom\\u0000"}', None, 400, ["NUL"]),
    (
        "nul-in-metadata-key",
        b'{"job_id": "JOB", "status": "running", "metadata": {"ip\\u0000": "10.0.0.1"}}',
        None,
        400,
        ["NUL"],
    ),
    ("bad-utf8-in-unknown-field", b'{"job_id": "JOB", "status": "failed", "note": "\xff"}', None, 400, ["UTF-8"]),
    (
        "metadata-over-16-kib",
        b'{"job_id": "JOB", "status": "running", "metadata": {"blob": "' + b"x" * 17_000 + b'"}}',
        None,
        413,
        ["metadata", "16384"],
    ),
]


@pytest.mark.parametrize(
    ("body", "signature", "code", "words"), [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT]
)
async def test_bad_input_gets_a_clear_error_and_writes_nothing(
    api: Api, db_engine: AsyncEngine, body: bytes, signature: str | None, code: int, words: list[str]
) -> None:
    _, job_id = await api.new_job()
    raw = body.replace(b"JOB", job_id.encode())
    before = await table_counts(db_engine)
    response = await api.callback(raw, signature=signature)
    assert response.status_code == code, response.text
    detail = response.json()["detail"]
    for word in words:
        assert word in detail
    assert await table_counts(db_engine) == before


async def test_metadata_that_would_grow_past_16_kib_is_refused_and_writes_nothing(
    api: Api, db_engine: AsyncEngine
) -> None:
    agent_id, job_id = await api.new_job()
    first = {"job_id": job_id, "status": "provisioning", "step": "vm_created", "metadata": {"a": "x" * 9_000}}
    assert (await api.callback(first)).status_code == 200
    before = await table_counts(db_engine)
    second = {"job_id": job_id, "status": "provisioning", "step": "ansible_started", "metadata": {"b": "y" * 9_000}}
    response = await api.callback(second)
    assert response.status_code == 413, response.text
    assert "16384" in response.json()["detail"]
    assert await table_counts(db_engine) == before
    assert (await api.status(agent_id)).json()["currentStep"] == "vm_created"


async def test_an_unreachable_database_is_503_with_retry_after(settings: Any) -> None:
    # A port where nothing listens: the hub starts (the pool connects lazily) and answers 503.
    app = create_app(replace(settings, database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none"))
    raw = b'{"job_id": "j", "status": "provisioning"}'
    async with app_running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
            response = await client.post(
                "/api/webhooks/github", content=raw, headers={"X-Hub-Signature-256": sign(settings.webhook_secret, raw)}
            )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "database" in response.json()["detail"]


async def test_a_late_callback_of_a_superseded_job_changes_nothing(api: Api) -> None:
    agent_id, old_job = await api.new_job()
    await api.callback({"job_id": old_job, "status": "running", "metadata": {"ip_address": "10.0.0.1"}})
    new = await api.provision(agent_id)
    assert new["status"]["version"] == 3
    for late in ({"type": "heartbeat"}, {"status": "stopped"}):
        response = await api.callback({"job_id": old_job, **late})
        assert response.status_code == 200, response.text
        assert response.json()["applied"] is False
    status = (await api.status(agent_id)).json()
    assert (status["jobId"], status["version"], status["status"]) == (new["jobId"], 3, "pending")
    response = await api.callback({"job_id": new["jobId"], "status": "provisioning", "step": "vm_created"})
    assert response.json() == {"received": True, "applied": True, "version": 4}


async def test_a_delivery_id_reused_for_another_job_is_refused(api: Api) -> None:
    _, first = await api.new_job()
    agent_id, second = await api.new_job()
    await api.callback({"job_id": first, "type": "heartbeat"}, delivery="shared-id")
    response = await api.callback({"job_id": second, "type": "heartbeat"}, delivery="shared-id")
    assert response.status_code == 409
    assert first in response.json()["detail"]
    assert (await api.status(agent_id)).json()["version"] == 1
