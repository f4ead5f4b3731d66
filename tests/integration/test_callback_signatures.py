"""Standard Webhooks callbacks on a real `status-hub serve` process: a valid one is applied; a body
tampered with, a stale timestamp or a malformed signature is a 401 that writes nothing; a replayed
webhook-id is the same delivery, applied once; X-Hub-Signature-256 still works beside it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.domain.signatures import sign_standard, standard_webhook
from hub.settings import Settings
from tests.integration.test_webhook import table_counts
from tests.support.api import Api
from tests.support.config import WEBHOOK_SECRET
from tests.support.process import Replica, hub_environment, hub_process

OWNER = "owner-signatures"


@pytest.fixture(scope="module")
async def replica(settings: Settings) -> AsyncIterator[Replica]:
    async with hub_process(hub_environment(settings)) as replica:
        yield replica


@pytest.fixture
async def api(replica: Replica, clean_db: AsyncEngine) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=replica.base, timeout=10) as client:
        yield Api(client)


async def test_a_signed_callback_is_applied(api: Api) -> None:
    agent_id, job_id = await api.new_job(OWNER)
    response = await api.standard_callback({"job_id": job_id, "status": "provisioning", "step": "vm_created"})
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "applied": True, "version": 2}
    assert (await api.status(agent_id, OWNER)).json()["currentStep"] == "vm_created"


async def test_a_tampered_body_is_refused_and_writes_nothing(api: Api, db_engine: AsyncEngine) -> None:
    _, job_id = await api.new_job(OWNER)
    before = await table_counts(db_engine)
    signed = json.dumps({"job_id": job_id, "type": "heartbeat"}).encode()
    tampered = json.dumps({"job_id": job_id, "status": "failed", "error": "forged"}).encode()
    response = await api.standard_callback(signed, sent=tampered)
    assert response.status_code == 401, response.text
    assert "webhook-signature" in response.json()["detail"]
    assert await table_counts(db_engine) == before


@pytest.mark.parametrize("offset", [-301 - 60, 301 + 60], ids=["stale", "from-the-future"])
async def test_a_timestamp_outside_five_minutes_is_refused(api: Api, db_engine: AsyncEngine, offset: int) -> None:
    _, job_id = await api.new_job(OWNER)
    before = await table_counts(db_engine)
    response = await api.standard_callback(
        {"job_id": job_id, "status": "provisioning"}, timestamp=int(time.time()) + offset
    )
    assert response.status_code == 401, response.text
    assert "more than 5 minutes from the hub's clock" in response.json()["detail"]
    assert await table_counts(db_engine) == before


async def test_a_replayed_webhook_id_is_the_same_delivery(api: Api, db_engine: AsyncEngine) -> None:
    agent_id, job_id = await api.new_job(OWNER)
    raw = json.dumps({"job_id": job_id, "status": "provisioning", "step": "vm_created"}).encode()
    # The captured request, headers and all, sent again: answered as the first time, applied once.
    signed = sign_standard(standard_webhook(WEBHOOK_SECRET), "msg_1", int(time.time()), raw)
    headers = {"Content-Type": "application/json", **signed}
    first = await api.client.post("/api/webhooks/github", content=raw, headers=headers)
    replayed = [await api.client.post("/api/webhooks/github", content=raw, headers=headers) for _ in range(5)]
    assert first.status_code == 200, first.text
    assert {json.dumps(response.json()) for response in replayed} == {json.dumps(first.json())}
    assert first.json() == {"received": True, "applied": True, "version": 2}
    # A heartbeat replayed is its first answer again too: a dead agent cannot be kept looking alive by it.
    beat = {"job_id": job_id, "type": "heartbeat"}
    heartbeats = [await api.standard_callback(beat, webhook_id="msg_beat") for _ in range(3)]
    assert [response.json()["version"] for response in heartbeats] == [3, 3, 3]
    assert (await api.status(agent_id, OWNER)).json()["version"] == 3
    async with db_engine.connect() as connection:
        logged = await connection.execute(text("SELECT count(*) FROM callback_events WHERE delivery_id = 'msg_1'"))
        assert logged.scalar_one() == 1


async def test_a_webhook_id_reused_for_another_job_is_refused(api: Api) -> None:
    _, first = await api.new_job(OWNER)
    _, second = await api.new_job(OWNER)
    used = await api.standard_callback({"job_id": first, "type": "heartbeat"}, webhook_id="msg_shared")
    assert used.status_code == 200
    response = await api.standard_callback({"job_id": second, "type": "heartbeat"}, webhook_id="msg_shared")
    assert response.status_code == 409 and first in response.json()["detail"]


@pytest.mark.parametrize(
    ("changed", "dropped", "says"),
    [
        ({}, ("webhook-id", "webhook-timestamp"), "webhook-id, webhook-timestamp"),
        ({"webhook-timestamp": "soon"}, (), "Unix seconds"),
        ({"webhook-signature": "v1"}, (), "expected v1,<base64"),
        ({"webhook-signature": "v1,not base64!"}, (), "expected v1,<base64"),
        ({"webhook-signature": "v2,bm90LWEtdjEtc2lnbmF0dXJlLWF0LWFsbA=="}, (), "no v1 signature matches"),
        ({"webhook-id": "msg_other"}, (), "no v1 signature matches"),
    ],
    ids=["missing-headers", "timestamp-not-a-number", "no-comma", "not-base64", "other-version", "another-id"],
)
async def test_a_malformed_or_mismatched_signature_is_a_401(
    api: Api, db_engine: AsyncEngine, changed: dict[str, str], dropped: tuple[str, ...], says: str
) -> None:
    _, job_id = await api.new_job(OWNER)
    raw = json.dumps({"job_id": job_id, "type": "heartbeat"}).encode()
    signed = sign_standard(standard_webhook(WEBHOOK_SECRET), "msg_x", int(time.time()), raw)
    sent = {name: value for name, value in {**signed, **changed}.items() if name not in dropped}
    before = await table_counts(db_engine)
    response = await api.client.post("/api/webhooks/github", content=raw, headers=sent)
    assert response.status_code == 401, response.text
    assert says in response.json()["detail"]
    assert await table_counts(db_engine) == before


async def test_x_hub_signature_256_is_still_accepted(api: Api) -> None:
    _, job_id = await api.new_job(OWNER)
    response = await api.callback({"job_id": job_id, "type": "heartbeat"}, delivery=str(uuid.uuid4()))
    assert response.json() == {"received": True, "applied": True, "version": 2}


async def test_a_bearer_token_is_refused_when_oidc_is_off(api: Api) -> None:
    _, job_id = await api.new_job(OWNER)
    response = await api.oidc_callback({"job_id": job_id, "type": "heartbeat"}, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
    assert response.status_code == 401
    detail = response.json()["detail"]
    assert "does not accept OIDC tokens" in detail and "webhook-signature" in detail
