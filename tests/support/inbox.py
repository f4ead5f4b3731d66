"""What a broker subscriber's ``deliver`` callback receives, read back with a bounded wait."""

from __future__ import annotations

import asyncio
from typing import Any


class Inbox:
    def __init__(self, timeout: float = 10.0) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._timeout = timeout

    def put(self, value: Any) -> None:
        self._queue.put_nowait(value)

    async def next(self) -> Any:
        return await asyncio.wait_for(self._queue.get(), self._timeout)

    def empty(self) -> bool:
        return self._queue.empty()


def pair(channel: str, data: bytes) -> tuple[str, bytes]:
    """A broker decoder that keeps the channel and the bytes as they came."""
    return channel, data
