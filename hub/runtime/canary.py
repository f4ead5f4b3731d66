"""The readiness canary: this replica publishes on a channel of its own and listens to it, so a
subscriber connection that looks up but hears nothing (a half-open socket, a proxy that lost the
subscription) makes the replica not ready."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from channels import Broker
from hub.domain.frames import StatusFrame
from hub.domain.wire import VersionOnly, encode

log = logging.getLogger(__name__)

# Seconds between two canaries; readiness asks for one heard within CANARY_MAX_AGE.
CANARY_INTERVAL: Final = 5.0
CANARY_MAX_AGE: Final = 15.0


class Canary:
    def __init__(
        self,
        broker: Broker[StatusFrame],
        channel: str,
        *,
        interval: float = CANARY_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._broker = broker
        self._channel = channel
        self._interval = interval
        self._clock = clock
        self._heard_at: float | None = None

    @property
    def channel(self) -> str:
        return self._channel

    def age(self) -> float | None:
        """Seconds since the last canary came back; None before the first."""
        return None if self._heard_at is None else self._clock() - self._heard_at

    def _heard(self, _frame: StatusFrame) -> None:
        self._heard_at = self._clock()

    async def run(self) -> None:
        """Listen on the canary channel and publish on it every ``interval`` seconds, until cancelled."""
        async with self._broker.subscribe(self._channel, self._heard):
            sent = 0
            while True:
                sent += 1
                try:
                    # Shaped like a status so the broker's one decoder takes it.
                    await self._broker.publish(self._channel, encode(VersionOnly(agentId="canary", version=sent)))
                except Exception as exc:
                    log.debug("The readiness canary could not be published: %r", exc)
                await asyncio.sleep(self._interval)
