"""A thin client for the hub's HTTP API, as tests (and a workflow) use it."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx

from hub.domain.signatures import sign, sign_standard, standard_webhook
from hub.domain.tokens import issue_dashboard_token
from tests.support.config import ADMIN_TOKEN, JWT_SECRET, WEBHOOK_SECRET


def token_for(owner_id: str, *, secret: str = JWT_SECRET, ttl_seconds: int = 3600) -> str:
    return issue_dashboard_token(secret, owner_id, ttl_seconds=ttl_seconds)


class Api:
    def __init__(self, client: httpx.AsyncClient, *, webhook_secret: str = WEBHOOK_SECRET) -> None:
        self.client = client
        self.webhook_secret = webhook_secret

    async def create_agent(self, owner_id: str = "owner-1", name: str = "agent") -> dict[str, Any]:
        response = await self.client.post(
            "/api/agents",
            json={"ownerId": owner_id, "name": name},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def provision(
        self, agent_id: str, job_id: str | None = None, *, repository_id: int | None = None, expect: int = 201
    ) -> dict[str, Any]:
        request: dict[str, Any] = {} if job_id is None else {"jobId": job_id}
        if repository_id is not None:
            request["repositoryId"] = repository_id
        response = await self.client.post(
            f"/api/agents/{agent_id}/provision", json=request, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert response.status_code == expect, response.text
        body: dict[str, Any] = response.json()
        return body

    async def new_job(self, owner_id: str = "owner-1", *, repository_id: int | None = None) -> tuple[str, str]:
        """(agent id, job id) of a freshly provisioned agent (bound to ``repository_id`` when given)."""
        agent = await self.create_agent(owner_id)
        provisioned = await self.provision(agent["id"], repository_id=repository_id)
        return agent["id"], provisioned["jobId"]

    async def callback(
        self, body: dict[str, Any] | bytes, *, delivery: str | None = None, signature: str | None = None
    ) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature if signature is not None else sign(self.webhook_secret, raw),
        }
        if delivery is not None:
            headers["X-GitHub-Delivery"] = delivery
        return await self.client.post("/api/webhooks/github", content=raw, headers=headers)

    async def standard_callback(
        self,
        body: dict[str, Any] | bytes,
        *,
        webhook_id: str | None = None,
        timestamp: int | None = None,
        sent: bytes | None = None,
    ) -> httpx.Response:
        """A callback signed with Standard Webhooks over ``body``; ``sent`` replaces the bytes sent
        (a body tampered with after signing)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
        signed = sign_standard(
            standard_webhook(self.webhook_secret), webhook_id, int(time.time()) if timestamp is None else timestamp, raw
        )
        headers = {"Content-Type": "application/json", **signed}
        return await self.client.post("/api/webhooks/github", content=sent or raw, headers=headers)

    async def oidc_callback(
        self, body: dict[str, Any] | bytes, token: str, *, delivery: str | None = None
    ) -> httpx.Response:
        """A callback carrying a GitHub Actions OIDC token and no signature."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        if delivery is not None:
            headers["X-GitHub-Delivery"] = delivery
        return await self.client.post("/api/webhooks/github", content=raw, headers=headers)

    async def heartbeat(self, job_id: str) -> int:
        """Send a heartbeat (a visible change); the version it produced."""
        response = await self.callback({"job_id": job_id, "type": "heartbeat"})
        assert response.status_code == 200, response.text
        version: int = response.json()["version"]
        return version

    async def status(self, agent_id: str, owner_id: str = "owner-1", etag: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token_for(owner_id)}"}
        if etag is not None:
            headers["If-None-Match"] = etag
        return await self.client.get(f"/api/agents/{agent_id}/instance", headers=headers)
