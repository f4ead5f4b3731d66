"""The callback view and the websocket consumer: update a row, publish to the group, fan out."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

import jwt
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

WEBHOOK_SECRET = os.environ["PEER_WEBHOOK_SECRET"].encode()
JWT_SECRET = os.environ["PEER_JWT_SECRET"]
STEPS = [
    {"key": k, "label": label, "state": "completed" if i == 0 else "active" if i == 1 else "pending"}
    for i, (k, label) in enumerate(
        [
            ("queued", "Queued"),
            ("creating_server", "Creating Server"),
            ("installing_dependencies", "Installing Dependencies"),
            ("configuring_agent", "Configuring Agent"),
            ("running", "Running"),
        ]
    )
]
UPDATE = (
    "UPDATE peer_agents SET version = version + 1, heartbeat_at = now() WHERE id = %s RETURNING version, heartbeat_at"
)
SELECT = "SELECT version, heartbeat_at FROM peer_agents WHERE id = %s"


def frame(agent_id: str, version: int, heartbeat: Any) -> str:
    status = {
        "agentId": agent_id,
        "status": "provisioning",
        "steps": STEPS,
        "lastHeartbeatAt": heartbeat.isoformat(),
        "version": version,
    }
    return json.dumps({"type": "status", "data": status}, separators=(",", ":"))


def _bump(agent_id: str) -> tuple[int, Any] | None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(UPDATE, [agent_id])
        row: tuple[int, Any] | None = cursor.fetchone()
        return row


def _read(agent_id: str) -> tuple[int, Any] | None:
    with connection.cursor() as cursor:
        cursor.execute(SELECT, [agent_id])
        row: tuple[int, Any] | None = cursor.fetchone()
        return row


@csrf_exempt  # type: ignore[untyped-decorator]  # Django is installed (untyped) only in the peer's venv
async def callback(request: HttpRequest) -> HttpResponse:
    raw = request.body
    expected = "sha256=" + hmac.new(WEBHOOK_SECRET, raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
        return JsonResponse({"detail": "Bad signature."}, status=401)
    agent_id = json.loads(raw)["job_id"]
    row = await sync_to_async(_bump)(agent_id)
    if row is None:
        return JsonResponse({"detail": "Unknown job."}, status=404)
    layer = get_channel_layer()
    await layer.group_send(f"agent_{agent_id}", {"type": "status.frame", "text": frame(agent_id, row[0], row[1])})
    return JsonResponse({"received": True, "version": row[0]})


class AgentConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        self.agent_id = self.scope["url_route"]["kwargs"]["agent_id"]
        self.group = f"agent_{self.agent_id}"
        await self.accept()
        headers = dict(self.scope["headers"])
        token = headers.get(b"authorization", b"").decode().removeprefix("Bearer ")
        try:
            jwt.decode(token, JWT_SECRET, algorithms=["HS256"])
        except jwt.InvalidTokenError:
            await self.close(code=4401)
            return
        await self.channel_layer.group_add(self.group, self.channel_name)
        row = await database_sync_to_async(_read)(self.agent_id)
        await self.send(text_data=frame(self.agent_id, row[0], row[1]))

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def status_frame(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])


urlpatterns = [path("api/webhooks/github", callback)]
