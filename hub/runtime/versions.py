"""What a current poll needs, without the database: agent -> (owner, instance, version) for the agents
this process was polled for lately, kept current by the agent's pub/sub channel (the one its sockets
use), resynced with them when a subscription is restored, and covered by the reconcile."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Final

from hub.domain.frames import StatusFrame
from hub.runtime.logs import log_fields

log = logging.getLogger(__name__)

# Agents kept at most; past it, polls of other agents read the database as before.
MAX_AGENTS: Final = 10_000
# Seconds without a poll after which an agent's entry (and its subscription) is released.
IDLE_AFTER: Final = 60.0
# Seconds a shutdown waits for the subscribes and reads in progress.
CLOSE_GRACE: Final = 5.0

Subscribe = Callable[[str, Callable[[StatusFrame], None]], AbstractAsyncContextManager[None]]
# The agent's (owner id, instance id, version) from Postgres; None when it has no instance.
ReadCurrent = Callable[[uuid.UUID], Awaitable[tuple[str, uuid.UUID, int] | None]]


class _Entry:
    __slots__ = ("instance_id", "last_polled", "owner_id", "ready", "subscription", "version")

    def __init__(self, now: float) -> None:
        self.owner_id = ""
        self.instance_id = ""
        self.version = 0
        self.last_polled = now
        # True once the subscription is live and the value was read after it: only then can a poll
        # trust it (nothing published since was missed).
        self.ready = False
        self.subscription: AbstractAsyncContextManager[None] | None = None

    def take(self, frame: StatusFrame) -> None:
        if frame.version > self.version:
            self.version = frame.version
            self.instance_id = frame.instance_id


class VersionCache:
    """Answers "is this poll current?" from memory. An agent is added on its first poll (subscribe
    first, then read, so nothing published in between is missed) and released after IDLE_AFTER
    seconds without a poll. The owner of an agent never changes, so it is kept as read."""

    def __init__(
        self,
        subscribe: Subscribe,
        read_current: ReadCurrent,
        *,
        max_agents: int = MAX_AGENTS,
        idle_after: float = IDLE_AFTER,
    ) -> None:
        self._subscribe = subscribe
        self._read_current = read_current
        self._max_agents = max_agents
        self._idle_after = idle_after
        self._entries: dict[str, _Entry] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def current(self, agent_id: str) -> tuple[str, str, int] | None:
        """(owner id, instance id, version) of an agent, when known; each call counts as a poll."""
        entry = self._entries.get(agent_id)
        if entry is None:
            return None
        entry.last_polled = asyncio.get_running_loop().time()
        return (entry.owner_id, entry.instance_id, entry.version) if entry.ready else None

    def watch(self, agent_id: str) -> None:
        """Start keeping ``agent_id`` (after a poll read it, so only agents that exist and that their
        owner polls take a subscription), unless it is kept already or the cache is full."""
        if agent_id not in self._entries and len(self._entries) < self._max_agents:
            entry = self._entries[agent_id] = _Entry(asyncio.get_running_loop().time())
            self._start(agent_id, entry)

    def held_versions(self) -> dict[str, int]:
        """For the reconcile, like a socket's: the version held of each agent."""
        return {agent_id: entry.version for agent_id, entry in self._entries.items() if entry.ready}

    def offer(self, frame: StatusFrame) -> None:
        """A status from the reconcile: kept when newer."""
        self.observed(frame.agent_id, frame.instance_id, frame.version)

    def observed(self, agent_id: str, instance_id: str, version: int) -> None:
        """A version read from Postgres by a poll: kept when newer (it repairs a lost publish early)."""
        entry = self._entries.get(agent_id)
        if entry is not None and version > entry.version:
            entry.version, entry.instance_id = version, instance_id

    def _start(self, agent_id: str, entry: _Entry) -> None:
        task = asyncio.create_task(self._watch(agent_id, entry), name=f"poll-watch-{agent_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, agent_id: str, entry: _Entry) -> None:
        """Subscribe, then read the current version: the entry is trusted from then on."""
        subscription = self._subscribe(agent_id, entry.take)
        try:
            await subscription.__aenter__()
        except Exception as exc:
            log.info(
                "Could not watch agent %s for polls (%s); its polls read the database.",
                agent_id,
                exc,
                extra=log_fields(agent_id=agent_id),
            )
            self._forget(agent_id, entry)
            return
        entry.subscription = subscription
        if self._entries.get(agent_id) is not entry:  # released meanwhile
            await self._leave(entry)
            return
        try:
            found = await self._read_current(uuid.UUID(agent_id))
        except Exception as exc:
            log.info(
                "Could not read agent %s for the poll cache (%s); its polls read the database.",
                agent_id,
                exc,
                extra=log_fields(agent_id=agent_id),
            )
            found = None
        if found is None or self._entries.get(agent_id) is not entry:
            self._forget(agent_id, entry)
            await self._leave(entry)
            return
        owner_id, instance_id, version = found
        entry.owner_id = owner_id
        if version > entry.version:
            entry.version, entry.instance_id = version, str(instance_id)
        entry.ready = True

    def _forget(self, agent_id: str, entry: _Entry) -> None:
        if self._entries.get(agent_id) is entry:
            del self._entries[agent_id]

    async def release_idle(self, now: float) -> int:
        """Release the agents not polled for IDLE_AFTER seconds; how many were released."""
        idle = [a for a, e in self._entries.items() if e.ready and now - e.last_polled > self._idle_after]
        for agent_id in idle:
            await self._leave(self._entries.pop(agent_id))
        return len(idle)

    async def release_idle_forever(self) -> None:
        """Release idle agents on a timer; never dies but by cancellation."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._idle_after / 2)
            try:
                await self.release_idle(loop.time())
            except Exception:
                log.exception("Releasing idle agents of the poll cache failed; trying again later.")

    async def close(self) -> None:
        # Waited for, not cancelled at once: a read cancelled mid-query can leave its pooled
        # connection checked out for good. A subscribe or a read ends within a few seconds anyway.
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=CLOSE_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            await self._leave(entry)

    @staticmethod
    async def _leave(entry: _Entry) -> None:
        subscription, entry.subscription = entry.subscription, None
        if subscription is not None:
            try:
                await subscription.__aexit__(None, None, None)
            except Exception:
                log.exception("Leaving a poll cache subscription failed.")
