"""The hub's uvicorn protocol (hub.live.transport) reads internals of the uvicorn and websockets
releases pyproject.toml pins. If an upgrade moves them, these fail loudly; the hub would otherwise
fall back to per-socket ASGI sends without a word, and lose most of its fan-out throughput."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Litestar, WebSocket, websocket
from websockets.asyncio.client import connect

from hub.domain.frames import text_frame
from hub.live.live_socket import WRITE_FRAME_EXTENSION
from tests.support.server import serve_app
from tests.support.ws import ws_url

DIRECT = b'{"written":"directly"}'


@websocket("/probe")
async def probe(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    extensions: dict[str, Any] = socket.scope.get("extensions") or {}
    offered = extensions.get(WRITE_FRAME_EXTENSION)
    if offered is None:
        await socket.send_text(f"no {WRITE_FRAME_EXTENSION} extension in the scope")
    else:
        try:
            wrote = offered["write_frame"](text_frame(DIRECT))
        except Exception as exc:  # the failure is the finding: send it to the test
            await socket.send_text(f"write_frame raised {exc!r}")
        else:
            if not wrote:
                await socket.send_text("write_frame refused an open, idle connection")
    await socket.receive()  # until the client leaves


async def test_direct_frame_writes_attach_and_reach_the_client() -> None:
    async with serve_app(Litestar([probe])) as base, connect(ws_url(base, "/probe"), proxy=None) as ws:
        received = await asyncio.wait_for(ws.recv(decode=False), 10)
    assert received == DIRECT, received
