"""Websocket client helpers for tests: connect, read the next frame of a kind, read a close code."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.api import token_for

DEFAULT_TIMEOUT = 10.0


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://", 1) + path


def open_socket(
    base: str, path: str, *, owner: str | None = "owner-1", headers: dict[str, str] | None = None, **options: Any
) -> connect:
    all_headers = dict(headers or {})
    if owner is not None:
        all_headers["Authorization"] = f"Bearer {token_for(owner)}"
    return connect(
        ws_url(base, path),
        additional_headers=all_headers,
        proxy=None,
        compression=None,
        open_timeout=DEFAULT_TIMEOUT,
        **options,
    )


async def next_frame(ws: ClientConnection, kind: str = "status", timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """The next frame of ``kind``, skipping others (pings); bounded by ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame["type"] == kind:
                return frame


async def next_status(ws: ClientConnection, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    data: dict[str, Any] = (await next_frame(ws, "status", timeout))["data"]
    return data


async def until_version(ws: ClientConnection, version: int, timeout: float = DEFAULT_TIMEOUT) -> list[int]:
    """Read statuses until ``version``; returns every version seen on the way."""
    seen: list[int] = []
    async with asyncio.timeout(timeout):
        while not seen or seen[-1] < version:
            seen.append((await next_status(ws, timeout))["version"])
    return seen


async def close_code(ws: ClientConnection, timeout: float = DEFAULT_TIMEOUT) -> int | None:
    """Read until the server closes; the close code it sent."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        return None if closed.rcvd is None else closed.rcvd.code
