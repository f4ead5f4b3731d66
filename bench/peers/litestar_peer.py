"""Peer: a minimal hub on Litestar's ChannelsPlugin with its Redis pub/sub backend.

Runs from its own venv (bench/.peer-venvs/litestar); it never imports status-hub. The contract is
the bench's minimal one: a signed callback updates a row in Postgres (version + 1), publishes the
status after commit, and every websocket subscriber of the agent gets it, after a snapshot first.
Configuration comes from PEER_* variables set by the bench.

The same app is also the polling workload's baseline, the naive poller (the design the hub
replaces): ``GET /api/agents/{id}/instance`` runs one SELECT per poll and always answers 200 with
the status, with no authentication, no ETag and no cache.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import jwt
import msgspec
from litestar import Litestar, Request, Response, WebSocket, get, post, websocket
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from litestar.exceptions import HTTPException, WebSocketDisconnect
from redis.asyncio import Redis

DSN = os.environ["PEER_DSN"]
WEBHOOK_SECRET = os.environ["PEER_WEBHOOK_SECRET"].encode()
JWT_SECRET = os.environ["PEER_JWT_SECRET"]
PREFIX = os.environ.get("PEER_PREFIX", "peer:")
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
    "UPDATE peer_agents SET version = version + 1, heartbeat_at = now() WHERE id = $1 RETURNING version, heartbeat_at"
)
SELECT = "SELECT version, heartbeat_at FROM peer_agents WHERE id = $1"


class Callback(msgspec.Struct):
    job_id: str
    type: str | None = None


_callback = msgspec.json.Decoder(Callback)
_state: dict[str, Any] = {}


def status(agent_id: str, version: int, heartbeat: Any) -> dict[str, Any]:
    return {
        "agentId": agent_id,
        "status": "provisioning",
        "steps": STEPS,
        "lastHeartbeatAt": heartbeat.isoformat(),
        "version": version,
    }


def frame(agent_id: str, version: int, heartbeat: Any) -> bytes:
    return msgspec.json.encode({"type": "status", "data": status(agent_id, version, heartbeat)})


@post("/api/webhooks/github", status_code=200)
async def callback(request: Request[Any, Any, Any], channels: ChannelsPlugin) -> Response[bytes]:
    raw = await request.body()
    expected = "sha256=" + hmac.new(WEBHOOK_SECRET, raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("x-hub-signature-256", "")):
        raise HTTPException(status_code=401, detail="Bad signature.")
    body = _callback.decode(raw)
    async with _state["pool"].acquire() as conn, conn.transaction():
        row = await conn.fetchrow(UPDATE, body.job_id)
    if row is None:
        raise HTTPException(status_code=404, detail="Unknown job.")
    channels.publish(frame(body.job_id, row["version"], row["heartbeat_at"]), [PREFIX + body.job_id])
    return Response(msgspec.json.encode({"received": True, "version": row["version"]}), media_type="application/json")


@get("/api/agents/{agent_id:str}/instance")
async def naive_poll(agent_id: str) -> Response[bytes]:
    """The naive poller: one SELECT per poll, always a full 200 answer."""
    row = await _state["pool"].fetchrow(SELECT, agent_id)
    if row is None:
        raise HTTPException(status_code=404, detail="Unknown agent.")
    body = msgspec.json.encode(status(agent_id, row["version"], row["heartbeat_at"]))
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


@websocket("/api/agents/{agent_id:str}/instance/ws")
async def agent_socket(socket: WebSocket[Any, Any, Any], channels: ChannelsPlugin, agent_id: str) -> None:
    await socket.accept()
    token = socket.headers.get("authorization", "").removeprefix("Bearer ")
    try:
        jwt.decode(token, JWT_SECRET, algorithms=["HS256"])
    except jwt.InvalidTokenError:
        await socket.close(code=4401)
        return
    async with channels.start_subscription([PREFIX + agent_id]) as subscriber:
        row = await _state["pool"].fetchrow(SELECT, agent_id)
        await socket.send_data(frame(agent_id, row["version"], row["heartbeat_at"]), mode="text")
        async with subscriber.run_in_background(lambda data: socket.send_data(data, mode="text")):
            try:
                while True:
                    message = await socket.receive()
                    if message["type"] == "websocket.disconnect":
                        break
            except WebSocketDisconnect:
                pass


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    _state["pool"] = await asyncpg.create_pool(DSN, min_size=2, max_size=20)
    try:
        yield
    finally:
        await _state["pool"].close()


app = Litestar(
    route_handlers=[callback, naive_poll, agent_socket],
    plugins=[
        ChannelsPlugin(
            backend=RedisChannelsPubSubBackend(redis=Redis.from_url(os.environ["PEER_REDIS_URL"])),
            arbitrary_channels_allowed=True,
        )
    ],
    lifespan=[lifespan],
    openapi_config=None,
    logging_config=None,
)
