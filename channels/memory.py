"""An in-process backend: the embedded default, and the reference the Redis backend is tested against."""

from __future__ import annotations

from collections.abc import AsyncIterator

from channels.backend import Event, EventQueue, Message


class MemoryBackend:
    """Delivers what this process publishes to this process's subscribed channels.

    `max_pending` bounds the events waiting for the consumer; when it is reached, `publish()`
    waits (back-pressure) instead of letting memory grow.
    """

    def __init__(self, *, max_pending: int = 10_000) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}.")
        self._channels: set[str] = set()
        self._queue = EventQueue(max_pending)
        self._started = False
        self._stopped = False

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("The memory backend was already started; a backend is started once.")
        self._started = True

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._channels.clear()
        self._queue.close()

    async def publish(self, channel: str, data: bytes) -> None:
        self._check_running("publish")
        if channel in self._channels:
            await self._queue.put(Message(channel, data))

    async def subscribe(self, channel: str) -> None:
        self._check_running("subscribe")
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    def events(self) -> AsyncIterator[Event]:
        return self._queue.events()

    def _check_running(self, action: str) -> None:
        if not self._started or self._stopped:
            raise RuntimeError(f"Cannot {action}: the memory backend is not running (call start() first).")
