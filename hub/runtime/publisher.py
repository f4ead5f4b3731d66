"""The publish after commit, with a bounded backlog: at most one payload per agent (the newest) waits
for a retry, one loop retries them, and what no longer fits is left to the reconcile."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec

from hub.domain.wire import VersionOnly
from hub.runtime.logs import log_fields
from hub.runtime.metrics import Metrics

log = logging.getLogger(__name__)

# Seconds between retries while publishing fails: doubling from the first, capped.
RETRY_FIRST: Final = 0.5
RETRY_MAX: Final = 8.0
# Agents whose newest status waits for a retry; past it the oldest is dropped (the reconcile and the
# resync after Redis comes back repair it from Postgres).
MAX_BACKLOG: Final = 10_000

Publish = Callable[[str, bytes], Awaitable[None]]
_version_of = msgspec.json.Decoder(VersionOnly)


class Publisher:
    """Rings the doorbell after commit; never raises. Postgres is the truth: a status that cannot be
    published now waits in the backlog (newest per agent), and one retry loop sends the backlog in
    the order it failed once publishing works again. A status for an agent already waiting replaces
    the waiting one and waits too, so an agent's statuses never overtake each other."""

    def __init__(
        self,
        publish: Publish,
        metrics: Metrics,
        *,
        max_backlog: int = MAX_BACKLOG,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
    ) -> None:
        if max_backlog < 1:
            raise ValueError(f"max_backlog must be at least 1, got {max_backlog}.")
        if not 0 < retry_first <= retry_max:
            raise ValueError(f"Expected 0 < retry_first <= retry_max, got {retry_first} and {retry_max}.")
        self._publish = publish
        self._retry_first = retry_first
        self._retry_max = retry_max
        self._metrics = metrics
        self._max_backlog = max_backlog
        # agent id -> (version, payload) of its newest waiting status, in the order they failed
        self._backlog: dict[str, tuple[int, bytes]] = {}
        self._retrier: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    async def publish(self, agent_id: str, data: bytes) -> None:
        if agent_id in self._backlog:
            self._keep(agent_id, data)
            return
        try:
            await self._publish(agent_id, data)
        except Exception as exc:
            self._metrics.publish_failures_total.inc()
            log.warning(
                "Publishing the status of agent %s failed (%s); retrying in the background.",
                agent_id,
                exc,
                extra=log_fields(agent_id=agent_id),
            )
            self._keep(agent_id, data)

    def _keep(self, agent_id: str, data: bytes) -> None:
        """Wait for a retry, unless a newer status of the agent already waits: two publishes in flight
        can fail in either order, and the older must not replace the newer."""
        if self._closed:
            log.warning(
                "Dropped a status of agent %s that failed to publish during shutdown.",
                agent_id,
                extra=log_fields(agent_id=agent_id),
            )
            return
        backlog = self._backlog
        version = _version_of.decode(data).version
        waiting = backlog.get(agent_id)
        if waiting is not None:
            if version > waiting[0]:
                backlog[agent_id] = (version, data)
            return
        if len(backlog) >= self._max_backlog:
            oldest = next(iter(backlog))
            del backlog[oldest]
            self._metrics.publish_dropped_total.inc()
            log.warning(
                "The publish backlog is full; dropped agent %s's status (the reconcile repairs it).",
                oldest,
                extra=log_fields(agent_id=oldest),
            )
        backlog[agent_id] = (version, data)
        if self._retrier is None:
            self._retrier = asyncio.create_task(self._retry(), name="publish-retries")

    async def _retry(self) -> None:
        backlog, delay = self._backlog, self._retry_first
        try:
            while backlog:
                await asyncio.sleep(delay)
                sent = await self._send_backlog()
                delay = self._retry_first if sent else min(delay * 2, self._retry_max)
        finally:
            self._retrier = None

    async def _send_backlog(self) -> int:
        """Send the backlog in order until a publish fails; how many were sent."""
        backlog, sent = self._backlog, 0
        while backlog:
            agent_id, waiting = next(iter(backlog.items()))
            try:
                await self._publish(agent_id, waiting[1])
            except Exception as exc:
                log.debug(
                    "A retried publish of agent %s failed: %r", agent_id, exc, extra=log_fields(agent_id=agent_id)
                )
                return sent
            sent += 1
            if backlog.get(agent_id) is waiting:
                del backlog[agent_id]
            # else: a newer status came while this one was sent; it keeps its place and goes next.
        log.info("Published the statuses that were waiting for Redis (%d this round).", sent)
        return sent

    async def close(self, grace: float) -> None:
        """On shutdown: one last try at the backlog within ``grace`` seconds, then stop retrying."""
        self._closed = True
        retrier, self._retrier = self._retrier, None
        if retrier is not None:
            retrier.cancel()
            await asyncio.wait({retrier})
        if not self._backlog:
            return
        try:
            async with asyncio.timeout(grace):
                await self._send_backlog()
        except TimeoutError:
            pass
        if self._backlog:
            log.warning(
                "Stopping with %d unpublished statuses; other replicas' reconcile brings their sockets up to date.",
                len(self._backlog),
            )
            self._backlog.clear()
