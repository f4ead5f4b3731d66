"""One dashboard socket's live state: its subscriptions, at most one pending status per agent
(latest wins), and the task that sends them within a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Final

import msgspec

from hub.runtime import Hub, StatusFrame, status_frame

log = logging.getLogger(__name__)

# Close codes a client can read (the socket is accepted first, so browsers see them).
CLOSE_SERVICE_RESTART: Final = 1012  # sent by the server on shutdown: reconnect elsewhere
CLOSE_UNAUTHENTICATED: Final = 4401
CLOSE_FORBIDDEN: Final = 4403  # another owner's agent, or an Origin that is not allowed
CLOSE_NOT_FOUND: Final = 4404
CLOSE_TOO_SLOW: Final = 4408  # a send did not complete within the deadline: reconnect for a snapshot

MAX_SUBSCRIPTIONS: Final = 1000
# How long a too-slow client has to take what is already buffered and then the 4408 close frame.
CLOSE_GRACE: Final = 30.0

Send = Callable[[str], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]
_encoder = msgspec.json.Encoder()


class TooSlow(Exception):
    """The client did not take a frame within the send deadline."""


class LiveSocket:
    """Subscriptions and pending frames of one socket. ``offer`` is called by the broker for every
    published status and never blocks: it keeps only the newest unsent frame per agent, so a slow
    socket holds at most one frame per subscription and never delays anyone else."""

    def __init__(self, hub: Hub, send: Send, close: Close) -> None:
        self._hub = hub
        self._send = send
        self.close_connection = close
        self._pending: dict[str, StatusFrame] = {}
        # The newest version this client has (sent, or that it told us it had).
        self._versions: dict[str, int] = {}
        self._subscriptions: dict[str, AsyncExitStack] = {}
        self._wakeup = asyncio.Event()

    @property
    def agent_ids(self) -> list[str]:
        return list(self._subscriptions)

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def offer(self, frame: StatusFrame) -> None:
        agent_id = frame.agent_id
        if agent_id not in self._subscriptions:
            return  # a frame racing with an unsubscribe
        if frame.version <= self._versions.get(agent_id, 0):
            return
        pending = self._pending.get(agent_id)
        if pending is None or frame.version > pending.version:
            self._pending[agent_id] = frame
            self._hub.waker.wake(self._wakeup)

    async def subscribe(self, agent_id: str, known_version: int = 0) -> None:
        """Subscribe first, then read the snapshot: nothing published in between is missed, and
        the version filter in ``offer`` drops whatever the client already has."""
        if agent_id in self._subscriptions:
            self._versions[agent_id] = max(self._versions.get(agent_id, 0), known_version)
            return
        self._versions[agent_id] = known_version
        stack = AsyncExitStack()
        self._subscriptions[agent_id] = stack
        try:
            await stack.enter_async_context(self._hub.broker.subscribe(self._hub.channel(agent_id), self.offer))
            snapshot = await self._hub.snapshot(agent_id)
        except BaseException:
            # Includes cancellation mid-subscribe: leave nothing behind.
            await self._forget(agent_id)
            raise
        if snapshot is not None:
            self.offer(status_frame("", snapshot))

    async def unsubscribe(self, agent_id: str) -> None:
        await self._forget(agent_id)

    async def unsubscribe_all(self) -> None:
        for agent_id in list(self._subscriptions):
            await self._forget(agent_id)

    async def _forget(self, agent_id: str) -> None:
        stack = self._subscriptions.pop(agent_id, None)
        self._pending.pop(agent_id, None)
        self._versions.pop(agent_id, None)
        if stack is not None:
            await stack.aclose()

    async def run_sender(self, *, send_timeout: float, ping_interval: float) -> None:
        """Send pending frames as they come, a ping when idle; raise TooSlow past the deadline."""
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + ping_interval
        while True:
            if not self._pending:
                # asyncio.timeout, not wait_for: on 3.11 wait_for wraps every wait in a new Task.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(next_ping):
                        await self._wakeup.wait()
                self._wakeup.clear()
            if not self._pending:
                if loop.time() >= next_ping:
                    await self._deliver(self.ping_frame(), send_timeout)
                    next_ping = loop.time() + ping_interval
                continue
            # Pop before the await: a newer version arriving during the send becomes pending again.
            agent_id = next(iter(self._pending))
            frame = self._pending.pop(agent_id)
            self._versions[agent_id] = frame.version
            await self._deliver(frame.text, send_timeout)

    def ping_frame(self) -> str:
        versions = {agent_id: self._versions.get(agent_id, 0) for agent_id in self._subscriptions}
        return _encoder.encode({"type": "ping", "versions": versions}).decode()

    async def _deliver(self, text: str, send_timeout: float) -> None:
        try:
            async with asyncio.timeout(send_timeout):
                await self._send(text)
        except TimeoutError:
            raise TooSlow(f"The client did not take a frame within {send_timeout} s.") from None


def error_frame(agent_id: str | None, code: int, message: str) -> str:
    return _encoder.encode({"type": "error", "agentId": agent_id, "code": code, "message": message}).decode()
