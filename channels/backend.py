"""The contract between the fan-out (`Broker`) and a transport: events in, bytes out.

A backend moves opaque bytes between processes; decoding happens once, above it, in the broker.
"""

from __future__ import annotations

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
