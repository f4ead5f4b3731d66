"""Websocket endpoints: one agent (``/api/agents/{id}/instance/ws``) or many over one socket (``/api/ws``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any
from urllib.parse import urlsplit

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath
from litestar.types import WebSocketSendEvent

from hub import live
from hub.auth import (
    COOKIE_NAME,
    SUBPROTOCOL,
    TOKEN_SUBPROTOCOL_PREFIX,
    Unauthenticated,
    Viewer,
    bearer_token,
    verify_dashboard_token,
)
from hub.errors import CONNECTION_ERRORS
from hub.runtime import Hub, HubDep
from persistence import queries

log = logging.getLogger(__name__)

MAX_CLIENT_FRAME = 64 * 1024
CLOSE_INTERNAL_ERROR = 1011
# An error frame's code when a subscription failed because the database is unavailable: retry.
CLOSE_UNAVAILABLE = 4503
_UNAVAILABLE_MESSAGE = "The database is unavailable; subscribe again in a few seconds."
_CLOSE_TIMEOUT = 2.0


class ClientFrame(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    type: str
    agent_ids: list[str] = []
    versions: dict[str, int] = {}


_client_frame = msgspec.json.Decoder(ClientFrame)


@websocket("/api/agents/{agent_id:str}/instance/ws")
async def agent_socket(socket: WebSocket[Any, Any, Any], hub: HubDep, agent_id: FromPath[str]) -> None:
    viewer = await _open(socket, hub)
    if viewer is None:
        return
    try:
        allowed, refusals = await _authorize(hub, viewer, [agent_id])
    except CONNECTION_ERRORS:
        await close_socket(socket, CLOSE_INTERNAL_ERROR, "The database is unavailable; reconnect later.")
        return
    if not allowed:
        code, message = refusals[0][1], refusals[0][2]
        await close_socket(socket, code, message)
        return
    known = _int_or_zero(socket.query_params.get("version"))
    await _serve(socket, hub, allowed, {allowed[0]: known})


@websocket("/api/ws")
async def dashboard_socket(socket: WebSocket[Any, Any, Any], hub: HubDep) -> None:
    viewer = await _open(socket, hub)
    if viewer is None:
        return
    # Only the dashboard socket takes client frames (subscribe/unsubscribe).
    await _serve(socket, hub, [], {}, viewer=viewer)


async def _serve(
    socket: WebSocket[Any, Any, Any],
    hub: Hub,
    agent_ids: list[str],
    versions: dict[str, int],
    *,
    viewer: Viewer | None = None,
) -> None:
    async def send(text: str) -> None:
        await socket.send(_text_event(text))

    async def close(code: int, reason: str) -> None:
        await close_socket(socket, code, reason, timeout=live.CLOSE_GRACE)

    extensions: dict[str, Any] = socket.scope.get("extensions") or {}
    offered = extensions.get(live.WRITE_FRAME_EXTENSION)
    write_frame: live.WriteFrame | None = offered["write_frame"] if offered else None
    state = live.LiveSocket(hub, send, close, write_frame)
    hub.sockets.add(state)
    sender = asyncio.create_task(_run_sender(hub, state))
    receiver = asyncio.create_task(_run_receiver(socket, hub, state, agent_ids, versions, viewer))
    try:
        # Whichever ends first ends the socket: the client left (receiver), or it was too slow and
        # has been closed (sender); a close that never reached a stalled client ends no receive.
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        failed = [task.exception() for task in done if not task.cancelled() and task.exception() is not None]
        if failed:
            log.error("A dashboard socket failed; closing it with 1011.", exc_info=failed[0])
            await close_socket(socket, CLOSE_INTERNAL_ERROR, "Internal error: reconnect.")
    finally:
        hub.sockets.discard(state)
        for task in (sender, receiver):
            task.cancel()
        await asyncio.wait({sender, receiver})
        await state.unsubscribe_all()


async def _run_receiver(
    socket: WebSocket[Any, Any, Any],
    hub: Hub,
    state: live.LiveSocket,
    agent_ids: list[str],
    versions: dict[str, int],
    viewer: Viewer | None,
) -> None:
    try:
        for agent_id in agent_ids:
            try:
                await state.subscribe(agent_id, versions.get(agent_id, 0))
            except CONNECTION_ERRORS:
                await close_socket(socket, CLOSE_INTERNAL_ERROR, "The database is unavailable; reconnect later.")
                return
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if viewer is not None:
                await _handle_client_frame(socket, hub, state, viewer, message)
    except (WebSocketDisconnect, OSError, RuntimeError):
        return


async def _run_sender(hub: Hub, state: live.LiveSocket) -> None:
    try:
        await state.run_sender()
    except live.TooSlow as exc:
        hub.metrics.slow_socket_closes += 1
        log.info("Closing a slow dashboard socket: %s", exc)
        await state.close_connection(live.CLOSE_TOO_SLOW, "Too slow: reconnect to get a fresh snapshot.")
    except (OSError, RuntimeError, WebSocketDisconnect):
        # The client went away mid-send; the receive loop sees the disconnect and cleans up.
        pass


async def _handle_client_frame(
    socket: WebSocket[Any, Any, Any], hub: Hub, state: live.LiveSocket, viewer: Viewer, message: Any
) -> None:
    raw = message.get("text")
    if raw is None:
        raw = message.get("bytes") or b""
    if len(raw) > MAX_CLIENT_FRAME:
        await _send_error(socket, None, 4413, f"Client frames are limited to {MAX_CLIENT_FRAME} bytes.")
        return
    try:
        frame = _client_frame.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        await _send_error(socket, None, 4400, f"Invalid client frame: {exc}.")
        return
    # Ids in their canonical form, so an id written in capitals can be unsubscribed and its version
    # found; an id that is no UUID stays as it came and is refused as unknown.
    canonical = {agent_id: _canonical(agent_id) for agent_id in frame.agent_ids}
    if frame.type == "unsubscribe":
        for agent_id in dict.fromkeys(canonical.values()):
            await state.unsubscribe(agent_id)
        return
    if frame.type != "subscribe":
        await _send_error(socket, None, 4400, f"Field type must be subscribe or unsubscribe; got {frame.type!r}.")
        return
    versions = {_canonical(agent_id): version for agent_id, version in frame.versions.items()}
    wanted = list(dict.fromkeys(canonical.values()))
    added = [agent_id for agent_id in wanted if agent_id not in state.agent_ids]
    if len(state.agent_ids) + len(added) > live.MAX_SUBSCRIPTIONS:
        await _send_error(socket, None, 4429, f"A socket may watch at most {live.MAX_SUBSCRIPTIONS} agents.")
        return
    try:
        allowed, refusals = await _authorize(hub, viewer, wanted)
    except CONNECTION_ERRORS:
        refusals, allowed = [(agent_id, CLOSE_UNAVAILABLE, _UNAVAILABLE_MESSAGE) for agent_id in wanted], []
    for agent_id, code, reason in refusals:
        await _send_error(socket, agent_id, code, reason)
    for agent_id in allowed:
        try:
            await state.subscribe(agent_id, versions.get(agent_id, 0))
        except CONNECTION_ERRORS:
            # One agent's snapshot failing must not take the whole dashboard's socket down.
            await _send_error(socket, agent_id, CLOSE_UNAVAILABLE, _UNAVAILABLE_MESSAGE)


async def _authorize(hub: Hub, viewer: Viewer, agent_ids: list[str]) -> tuple[list[str], list[tuple[str, int, str]]]:
    """Split ``agent_ids`` into those the viewer may watch and (id, close code, reason) refusals."""
    keys: dict[str, uuid.UUID] = {}
    refusals: list[tuple[str, int, str]] = []
    for agent_id in agent_ids:
        try:
            keys[agent_id] = uuid.UUID(agent_id)
        except ValueError:
            refusals.append((agent_id, live.CLOSE_NOT_FOUND, f"No agent with id {agent_id!r}."))
    async with hub.sessions() as session:
        owners = await queries.owners_of(session, list(keys.values()))
    allowed: list[str] = []
    for agent_id, key in keys.items():
        owner = owners.get(key)
        if owner is None:
            refusals.append((agent_id, live.CLOSE_NOT_FOUND, f"No agent with id {agent_id}."))
        elif owner != viewer.owner_id:
            refusals.append((agent_id, live.CLOSE_FORBIDDEN, f"Agent {agent_id} belongs to another owner."))
        else:
            allowed.append(str(key))
    return allowed, refusals


async def _open(socket: WebSocket[Any, Any, Any], hub: Hub) -> Viewer | None:
    """Accept (so the client can read our close code), then check Origin and credentials."""
    offered: list[str] = list(socket.scope.get("subprotocols") or [])
    await socket.accept(subprotocols=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    # Read from the raw ASGI headers: Litestar's parsed headers and cookies would stay cached on
    # the connection for its whole life, ~2 KiB per idle socket for values needed once.
    headers = _raw_headers(socket, (b"origin", b"host", b"authorization", b"cookie"))
    origin = headers.get(b"origin")
    if origin is not None and not _origin_allowed(origin, headers.get(b"host"), hub.settings.allowed_origins):
        await close_socket(socket, live.CLOSE_FORBIDDEN, "This Origin is not allowed; add it to HUB_ALLOWED_ORIGINS.")
        return None
    token = bearer_token(headers.get(b"authorization"))
    if token is None:
        token = next(
            (p[len(TOKEN_SUBPROTOCOL_PREFIX) :] for p in offered if p.startswith(TOKEN_SUBPROTOCOL_PREFIX)), None
        )
    if token is None:
        # Only reached with an allowed Origin (or none, from a non-browser client).
        token = _cookie(headers.get(b"cookie"), COOKIE_NAME)
    if not token:
        await close_socket(socket, live.CLOSE_UNAUTHENTICATED, "A dashboard token is required.")
        return None
    try:
        return verify_dashboard_token(hub.settings.jwt_secret, token)
    except Unauthenticated as exc:
        await close_socket(socket, live.CLOSE_UNAUTHENTICATED, str(exc))
        return None


def _raw_headers(socket: WebSocket[Any, Any, Any], names: tuple[bytes, ...]) -> dict[bytes, str]:
    found: dict[bytes, str] = {}
    for name, value in socket.scope["headers"]:
        if name in names and name not in found:
            found[name] = value.decode("latin-1")
    return found


def _cookie(header: str | None, name: str) -> str | None:
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def _origin_allowed(origin: str, host: str | None, allowed: tuple[str, ...]) -> bool:
    if origin in allowed:
        return True
    # The hub's own dashboard page is same-origin.
    return host is not None and urlsplit(origin).netloc == host


async def _send_error(socket: WebSocket[Any, Any, Any], agent_id: str | None, code: int, message: str) -> None:
    await socket.send(_text_event(live.error_frame(agent_id, code, message)))


def _text_event(text: str) -> WebSocketSendEvent:
    # The raw ASGI event: the same str object goes to every socket, with no per-socket encoding.
    return {"type": "websocket.send", "bytes": None, "text": text}


async def close_socket(
    socket: WebSocket[Any, Any, Any], code: int, reason: str, *, timeout: float = _CLOSE_TIMEOUT
) -> None:
    # Bounded: a client that stopped reading must not hold the handler forever. The close frame
    # queues behind the frames already buffered, so a client that resumes reading within the
    # timeout still reads the code.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(socket.close(code=code, reason=reason[:120]), timeout=timeout)


def _canonical(agent_id: str) -> str:
    try:
        return str(uuid.UUID(agent_id))
    except ValueError:
        return agent_id


def _int_or_zero(raw: str | None) -> int:
    try:
        return max(0, int(raw)) if raw is not None else 0
    except ValueError:
        return 0
