"""Waking socket senders in batches, so a wide fan-out leaves room for everything else on the loop."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final

# Sends per loop iteration before the rest wait for the next one (PERFORMANCE.md: yield every
# ~100-200 sends, or a 1,000-wide broadcast holds callbacks for tens of milliseconds).
DEFAULT_BATCH: Final = 128


class Waker:
    """``wake(event)`` sets the event now while this loop iteration's budget lasts, and otherwise
    defers it to a drainer that sets ``batch`` events per iteration. Between two batches the loop
    runs the woken senders and polls I/O, so a callback arriving mid-broadcast is served promptly."""

    def __init__(self, batch: int = DEFAULT_BATCH) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}.")
        self._batch = batch
        self._budget = batch
        self._refill_scheduled = False
        self._deferred: deque[asyncio.Event] = deque()
        self._drainer: asyncio.Task[None] | None = None

    @property
    def deferred(self) -> int:
        return len(self._deferred)

    def wake(self, event: asyncio.Event) -> None:
        if event.is_set():
            return
        if self._budget > 0 and not self._deferred:
            self._budget -= 1
            event.set()
            if not self._refill_scheduled:
                # Runs on the next iteration: the budget is per iteration of the loop.
                self._refill_scheduled = True
                asyncio.get_running_loop().call_soon(self._refill)
            return
        self._deferred.append(event)
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain(), name="fan-out-drainer")

    def _refill(self) -> None:
        self._budget = self._batch
        self._refill_scheduled = False

    async def _drain(self) -> None:
        try:
            while self._deferred:
                await asyncio.sleep(0)  # one loop iteration: run the senders woken last time, poll I/O
                for _ in range(min(self._batch, len(self._deferred))):
                    self._deferred.popleft().set()
        finally:
            self._drainer = None

    def close(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
        self._deferred.clear()
