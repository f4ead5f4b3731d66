"""Websocket endpoints: one agent (``/api/agents/{id}/instance/ws``) or many over one socket (``/api/ws``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath

from hub.domain.frames import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_POLICY,
    CLOSE_SERVICE_RESTART,
    CLOSE_TOO_SLOW,
    ERROR_UNAVAILABLE,
)
from hub.domain.tokens import Viewer
from hub.live.client_frames import FRAME_RATE, FrameBudget, authorize, handle_client_frame, send_error
from hub.live.connection import close_socket, open_socket, send_text
from hub.live.drain import RESTART_REASON
from hub.live.live_socket import CLOSE_GRACE, WRITE_FRAME_EXTENSION, LiveSocket, TooSlow, WriteFrame
from hub.runtime import Hub, HubDep
from hub.runtime.logs import log_fields
from hub.runtime.pool import is_unavailable, unavailable_message

log = logging.getLogger(__name__)

# Seconds between a single-agent socket's tries while the database is unavailable: doubling, capped.
RETRY_FIRST = 1.0
RETRY_MAX = 10.0
# What a socket's tasks meet when the client goes away mid-send or mid-receive.
_GONE = (WebSocketDisconnect, OSError, RuntimeError)


@websocket("/api/agents/{agent_id:str}/instance/ws")
async def agent_socket(socket: WebSocket[Any, Any, Any], hub: HubDep, agent_id: FromPath[str]) -> None:
    viewer = await open_socket(socket, hub.settings, hub.tokens)
    if viewer is None:
        return
    known = _int_or_zero(socket.query_params.get("version"))
    await _serve(socket, hub, viewer, first=(agent_id, known))


@websocket("/api/ws")
async def dashboard_socket(socket: WebSocket[Any, Any, Any], hub: HubDep) -> None:
    viewer = await open_socket(socket, hub.settings, hub.tokens)
    if viewer is None:
        return
    # Only the dashboard socket takes client frames (subscribe/unsubscribe).
    await _serve(socket, hub, viewer, first=None)


async def _serve(socket: WebSocket[Any, Any, Any], hub: Hub, viewer: Viewer, *, first: tuple[str, int] | None) -> None:
    """Serve a socket until the client leaves. ``first``: the single-agent socket's agent and the
    version its client has; None for the dashboard socket, which subscribes by client frames."""
    if hub.closing:
        # Draining: this replica is closing its sockets; the client reconnects to another one.
        await close_socket(socket, CLOSE_SERVICE_RESTART, RESTART_REASON)
        return

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
    receiver = asyncio.create_task(_run_receiver(socket, hub, state, viewer, first))
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
        hub.collector.socket_closed()


async def _run_receiver(
    socket: WebSocket[Any, Any, Any], hub: Hub, state: LiveSocket, viewer: Viewer, first: tuple[str, int] | None
) -> None:
    try:
        if first is not None and not await _watch_first(socket, hub, state, viewer, *first):
            return
        loop = asyncio.get_running_loop()
        budget: FrameBudget | None = None  # made on the first frame: most sockets send one, or none
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if budget is None:
                budget = FrameBudget(loop.time())
            if not budget.take(loop.time()):
                reason = f"Too many client frames: at most {FRAME_RATE:g} per second sustained."
                await close_socket(socket, CLOSE_POLICY, reason)
                return
            if first is None:
                await handle_client_frame(socket, hub, state, viewer, budget, message)
    except _GONE as exc:
        log.debug("A dashboard socket's client went away while receiving: %r", exc)


async def _watch_first(
    socket: WebSocket[Any, Any, Any], hub: Hub, state: LiveSocket, viewer: Viewer, agent_id: str, known: int
) -> bool:
    """Authorize and subscribe the single-agent socket's agent; False when refused (and closed). While
    the database is unavailable the client gets the 4503 error frame, the socket stays open, and the
    hub tries again with backoff for as long as the client stays."""
    delay = RETRY_FIRST
    while True:
        try:
            allowed, refusals = await authorize(hub, viewer, [agent_id])
            if not allowed:
                _, code, message = refusals[0]
                await close_socket(socket, code, message)
                return False
            await state.subscribe(allowed[0], known)
            return True
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            message = unavailable_message(exc)
            log.info(
                "No snapshot for a new socket of agent %s (%s); retrying in %g s.",
                agent_id,
                message,
                delay,
                extra=log_fields(agent_id=agent_id),
            )
        await send_error(socket, [agent_id], ERROR_UNAVAILABLE, message)
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX)


async def _run_sender(hub: Hub, state: LiveSocket) -> None:
    try:
        await state.run_sender()
    except TooSlow as exc:
        hub.metrics.slow_socket_closes_total.inc()
        log.info("Closing a slow dashboard socket: %s", exc)
        await state.close_connection(CLOSE_TOO_SLOW, "Too slow: reconnect to get a fresh snapshot.")
    except _GONE as exc:
        # The receive loop sees the disconnect and cleans up.
        log.debug("A dashboard socket's client went away mid-send: %r", exc)


def _int_or_zero(raw: str | None) -> int:
    try:
        return max(0, int(raw)) if raw is not None else 0
    except ValueError:
        return 0
