"""The contract between the fan-out (`Broker`) and a transport: events in, bytes out.

A backend moves opaque bytes between processes; decoding happens once, above it, in the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Message:
    """One payload published on `channel`."""

    channel: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Restored:
    """The subscription was lost and is back: messages on these channels may have been missed.

    It is yielded only once the server has confirmed the renewed subscriptions, so a snapshot read
    after receiving it cannot miss a later message.
    """

    channels: tuple[str, ...]


Event = Message | Restored


class EventQueue:
    """A backend's events on their way to its one consumer: bounded (a full queue makes the producer
    wait instead of letting memory grow), and closed with a sentinel that also wakes a consumer
    blocked in `events()`."""

    def __init__(self, max_pending: int) -> None:
        # None is the sentinel.
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=max_pending)
        self._closed = False

    async def put(self, event: Event) -> None:
        await self._queue.put(event)

    def close(self) -> None:
        self._closed = True
        # Pending events are moot once closed; dropping them guarantees room for the sentinel.
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def events(self) -> AsyncIterator[Event]:
        while not self._closed:
            event = await self._queue.get()
            if event is None:
                return
            yield event


class Backend(Protocol):
    """A pub/sub transport with a single consumer of `events()`."""

    async def start(self) -> None:
        """Connect; after it, `subscribe()` works."""
        ...

    async def stop(self) -> None:
        """End `events()` and release the connection. Idempotent."""
        ...

    async def publish(self, channel: str, data: bytes) -> None:
        """Publish `data` on `channel`; raises on failure (the caller decides what to do)."""
        ...

    async def subscribe(self, channel: str) -> None:
        """Return only once the subscription is live (or recorded while the transport is down)."""
        ...

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving `channel`. Never raises because the transport is down."""
        ...

    def events(self) -> AsyncIterator[Event]:
        """Messages and restorations; never ends until `stop()`. One consumer only."""
        ...
