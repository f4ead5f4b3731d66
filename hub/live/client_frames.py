"""What a dashboard socket may ask: subscribe to and unsubscribe from agents its owner may watch."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Final

import msgspec
from litestar import WebSocket

from hub.domain.agent_ids import canonical_agent_id, parse_agent_id
from hub.domain.frames import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    ERROR_BAD_FRAME,
    ERROR_FRAME_TOO_LARGE,
    ERROR_TOO_MANY_AGENTS,
    ERROR_UNAVAILABLE,
    error_message,
)
from hub.domain.tokens import Viewer
from hub.live.connection import send_text
from hub.live.live_socket import MAX_SUBSCRIPTIONS, LiveSocket
from hub.runtime import Hub
from hub.runtime.pool import is_unavailable, unavailable_message
from persistence import queries

MAX_CLIENT_FRAME: Final = 64 * 1024

# (agent id, error code, message) of an agent a socket may not watch.
Refusal = tuple[str, int, str]
# The message of an error frame that lists several agents, by its code; other codes' messages
# name no agent, and the first one serves the whole group.
_SEVERAL: Final = {
    CLOSE_FORBIDDEN: "These agents belong to another owner.",
    CLOSE_NOT_FOUND: "No agents with these ids.",
}

# Client frames a socket may send: a burst of BURST, then RATE per second sustained. A socket past it
# is closed (1008): each frame can cost a query, and a misbehaving client must not cost the others.
FRAME_BURST: Final = 40
FRAME_RATE: Final = 20.0
# Subscribing this many new agents costs one more frame of the budget (each costs a snapshot read):
# a dashboard's first 1,000 agents fit in one burst, then 1,000 new agents a second at most.
AGENTS_PER_FRAME: Final = 50


class FrameBudget:
    """A token bucket of client frames for one socket (its receive loop holds it)."""

    __slots__ = ("_last", "_tokens")

    def __init__(self, now: float) -> None:
        self._tokens = float(FRAME_BURST)
        self._last = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` frames; False (and nothing spent) when the socket cannot afford them."""
        self._tokens = min(float(FRAME_BURST), self._tokens + (now - self._last) * FRAME_RATE)
        self._last = now
        if self._tokens < cost:
            return False
        self._tokens -= cost
        return True


class ClientFrame(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    type: str
    agent_ids: list[str] = []
    versions: dict[str, int] = {}


_client_frame = msgspec.json.Decoder(ClientFrame)


async def handle_client_frame(
    socket: WebSocket[Any, Any, Any], hub: Hub, state: LiveSocket, viewer: Viewer, budget: FrameBudget, message: Any
) -> None:
    raw = message.get("text")
    if raw is None:
        raw = message.get("bytes") or b""
    # Under the hub's own server, uvicorn refuses such a frame first (close 1009, unread); this is for
    # any other ASGI server the app runs under.
    if len(raw) > MAX_CLIENT_FRAME:
        await send_error(socket, [], ERROR_FRAME_TOO_LARGE, f"Client frames are limited to {MAX_CLIENT_FRAME} bytes.")
        return
    try:
        frame = _client_frame.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        await send_error(socket, [], ERROR_BAD_FRAME, f"Invalid client frame: {exc}.")
        return
    # Ids in their canonical form, so an id written in capitals can be unsubscribed and its version
    # found; an id that is no UUID stays as it came and is refused as unknown.
    wanted = list(dict.fromkeys(canonical_agent_id(agent_id) for agent_id in frame.agent_ids))
    if frame.type == "unsubscribe":
        for agent_id in wanted:
            await state.unsubscribe(agent_id)
        return
    if frame.type != "subscribe":
        await send_error(
            socket, [], ERROR_BAD_FRAME, f"Field type must be subscribe or unsubscribe; got {frame.type!r}."
        )
        return
    versions = {canonical_agent_id(agent_id): version for agent_id, version in frame.versions.items()}
    added = [agent_id for agent_id in wanted if not state.watches(agent_id)]
    if state.watch_count + len(added) > MAX_SUBSCRIPTIONS:
        await send_error(socket, [], ERROR_TOO_MANY_AGENTS, f"A socket may watch at most {MAX_SUBSCRIPTIONS} agents.")
        return
    for agent_id in wanted:
        if state.watches(agent_id):
            # Already authorized and subscribed: no query and no read, only what the client has.
            state.know(agent_id, versions.get(agent_id, 0))
    if not added:
        return
    if not budget.take(asyncio.get_running_loop().time(), len(added) / AGENTS_PER_FRAME):
        message = f"Subscribing to new agents too fast: at most {FRAME_RATE * AGENTS_PER_FRAME:g} a second."
        await send_error(socket, [], ERROR_TOO_MANY_AGENTS, message)
        return
    try:
        allowed, refusals = await authorize(hub, viewer, added)
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        allowed, refusals = [], [(agent_id, ERROR_UNAVAILABLE, unavailable_message(exc)) for agent_id in added]
    await _send_refusals(socket, refusals)
    unavailable: list[Refusal] = []
    for agent_id in allowed:
        try:
            await state.subscribe(agent_id, versions.get(agent_id, 0))
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            # One agent's snapshot failing must not take the whole dashboard's socket down.
            unavailable.append((agent_id, ERROR_UNAVAILABLE, unavailable_message(exc)))
    await _send_refusals(socket, unavailable)


async def _send_refusals(socket: WebSocket[Any, Any, Any], refusals: list[Refusal]) -> None:
    """One error frame per code, listing its agents: a frame of 1,000 refused ids draws at most
    three error frames, not 1,000."""
    by_code: dict[int, list[Refusal]] = {}
    for refusal in refusals:
        by_code.setdefault(refusal[1], []).append(refusal)
    for code, group in by_code.items():
        message = _SEVERAL[code] if len(group) > 1 and code in _SEVERAL else group[0][2]
        await send_error(socket, [agent_id for agent_id, _, _ in group], code, message)


async def authorize(hub: Hub, viewer: Viewer, agent_ids: list[str]) -> tuple[list[str], list[Refusal]]:
    """Split ``agent_ids`` into those the viewer may watch (canonical ids) and refusals."""
    keys: dict[str, uuid.UUID] = {}
    refusals: list[Refusal] = []
    for agent_id in agent_ids:
        key = parse_agent_id(agent_id)
        if key is None:
            refusals.append((agent_id, CLOSE_NOT_FOUND, f"No agent with id {agent_id!r}."))
        else:
            keys[agent_id] = key
    async with hub.sessions() as session:
        owners = await queries.owners_of(session, list(keys.values()))
    allowed: list[str] = []
    for agent_id, key in keys.items():
        owner = owners.get(key)
        if owner is None:
            refusals.append((agent_id, CLOSE_NOT_FOUND, f"No agent with id {agent_id}."))
        elif owner != viewer.owner_id:
            refusals.append((agent_id, CLOSE_FORBIDDEN, f"Agent {agent_id} belongs to another owner."))
        else:
            allowed.append(str(key))
    return allowed, refusals


async def send_error(socket: WebSocket[Any, Any, Any], agent_ids: list[str], code: int, message: str) -> None:
    await send_text(socket, error_message(agent_ids, code, message))
