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


class ChurnCollector:
    __slots__ = ("_closed", "_every", "_scheduled")

    def __init__(self, every: int = CLOSES_PER_COLLECTION) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}.")
        self._every = every
        self._closed = 0
        self._scheduled = False

    def socket_closed(self) -> None:
        self._closed += 1
        if self._closed >= self._every and not self._scheduled:
            self._scheduled = True
            # Soon, not now: the closing handler finishes (and drops its references) first.
            asyncio.get_running_loop().call_soon(self._collect)

    def _collect(self) -> None:
        self._scheduled = False
        closed, self._closed = self._closed, 0
        started = time.perf_counter()
        found = gc.collect()
        log.debug(
            "Full collection after %d closed sockets: %d objects in cycles freed in %.1f ms.",
            closed,
            found,
            (time.perf_counter() - started) * 1000,
        )
