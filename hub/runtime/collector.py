"""Full garbage collections paced by socket churn.

A closed connection leaves objects in reference cycles that are not the hub's to break (uvicorn's
HTTP protocol and its parser, Litestar's connection and its closures), and only a full collection
frees them. The hub makes full collections rare, because one over thousands of live sockets stalls
the loop for 100-300 ms; left alone, each socket opened and dropped kept about 18 KiB for good. So
one full collection runs after every ``every`` closed sockets: memory stays bounded by the number of
live sockets, and the stall is paid once per that many closes, never per socket."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Final

log = logging.getLogger(__name__)

CLOSES_PER_COLLECTION: Final = 500
# Seconds between two collections at least: when thousands of sockets close at once (a deploy, tokens
# issued together expiring together) the stalls must not come back to back.
MIN_INTERVAL: Final = 1.0


class ChurnCollector:
    __slots__ = ("_closed", "_every", "_last", "_min_interval", "_scheduled")

    def __init__(self, every: int = CLOSES_PER_COLLECTION, *, min_interval: float = MIN_INTERVAL) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}.")
        self._every = every
        self._min_interval = min_interval
        self._closed = 0
        self._scheduled = False
        self._last = float("-inf")

    def socket_closed(self) -> None:
        self._closed += 1
        if self._closed >= self._every and not self._scheduled:
            self._scheduled = True
            loop = asyncio.get_running_loop()
            # Never now: the closing handler finishes (and drops its references) first.
            loop.call_later(max(0.0, self._last + self._min_interval - loop.time()), self._collect)

    def _collect(self) -> None:
        self._scheduled = False
        self._last = asyncio.get_running_loop().time()
        closed, self._closed = self._closed, 0
        started = time.perf_counter()
        found = gc.collect()
        log.debug(
            "Full collection after %d closed sockets: %d objects in cycles freed in %.1f ms.",
            closed,
            found,
            (time.perf_counter() - started) * 1000,
        )
