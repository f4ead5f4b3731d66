"""Websocket endpoints: one agent (``/api/agents/{id}/instance/ws``) or many over one socket (``/api/ws``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath

from hub.domain.frames import CLOSE_INTERNAL_ERROR, CLOSE_TOO_SLOW
from hub.domain.tokens import Viewer
from hub.live.client_frames import authorize, handle_client_frame
from hub.live.connection import close_socket, open_socket, send_text
from hub.live.live_socket import CLOSE_GRACE, WRITE_FRAME_EXTENSION, LiveSocket, TooSlow, WriteFrame
from hub.runtime import Hub, HubDep
from hub.runtime.pool import CONNECTION_ERRORS

log = logging.getLogger(__name__)

# What a socket's tasks meet when the client goes away mid-send or mid-receive.
_GONE = (WebSocketDisconnect, OSError, RuntimeError)


@websocket("/api/agents/{agent_id:str}/instance/ws")
async def agent_socket(socket: WebSocket[Any, Any, Any], hub: HubDep, agent_id: FromPath[str]) -> None:
    viewer = await open_socket(socket, hub.settings)
    if viewer is None:
        return
    try:
        allowed, refusals = await authorize(hub, viewer, [agent_id])
    except CONNECTION_ERRORS:
        await _close_unavailable(socket)
        return
    if not allowed:
        _, code, message = refusals[0]
        await close_socket(socket, code, message)
        return
    known = _int_or_zero(socket.query_params.get("version"))
    await _serve(socket, hub, viewer, allowed, {allowed[0]: known}, takes_frames=False)


@websocket("/api/ws")
async def dashboard_socket(socket: WebSocket[Any, Any, Any], hub: HubDep) -> None:
    viewer = await open_socket(socket, hub.settings)
    if viewer is None:
        return
    # Only the dashboard socket takes client frames (subscribe/unsubscribe).
    await _serve(socket, hub, viewer, [], {}, takes_frames=True)


async def _serve(
    socket: WebSocket[Any, Any, Any],
    hub: Hub,
    viewer: Viewer,
    agent_ids: list[str],
    versions: dict[str, int],
    *,
    takes_frames: bool,
) -> None:
    async def send(text: str) -> None:
        await send_text(socket, text)

    async def close(code: int, reason: str) -> None:
        await close_socket(socket, code, reason, timeout=CLOSE_GRACE)

    extensions: dict[str, Any] = socket.scope.get("extensions") or {}
    offered = extensions.get(WRITE_FRAME_EXTENSION)
    write_frame: WriteFrame | None = offered["write_frame"] if offered else None
    state = LiveSocket(hub, send, close, write_frame, expires_at=viewer.expires_at)
    hub.sockets.add(state)
    sender = asyncio.create_task(_run_sender(hub, state))
    receiver = asyncio.create_task(
        _run_receiver(socket, hub, state, agent_ids, versions, viewer if takes_frames else None)
    )
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
    state: LiveSocket,
    agent_ids: list[str],
    versions: dict[str, int],
    viewer: Viewer | None,
) -> None:
    try:
        for agent_id in agent_ids:
            try:
                await state.subscribe(agent_id, versions.get(agent_id, 0))
            except CONNECTION_ERRORS:
                await _close_unavailable(socket)
                return
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if viewer is not None:
                await handle_client_frame(socket, hub, state, viewer, message)
    except _GONE as exc:
        log.debug("A dashboard socket's client went away while receiving: %r", exc)


async def _run_sender(hub: Hub, state: LiveSocket) -> None:
    try:
        await state.run_sender()
    except TooSlow as exc:
        hub.metrics.slow_socket_closes += 1
        log.info("Closing a slow dashboard socket: %s", exc)
        await state.close_connection(CLOSE_TOO_SLOW, "Too slow: reconnect to get a fresh snapshot.")
    except _GONE as exc:
        # The receive loop sees the disconnect and cleans up.
        log.debug("A dashboard socket's client went away mid-send: %r", exc)


async def _close_unavailable(socket: WebSocket[Any, Any, Any]) -> None:
    await close_socket(socket, CLOSE_INTERNAL_ERROR, "The database is unavailable; reconnect later.")


def _int_or_zero(raw: str | None) -> int:
    try:
        return max(0, int(raw)) if raw is not None else 0
    except ValueError:
        return 0
