"""One dashboard socket's live state: its subscriptions, at most one pending status per agent
(latest wins), and the task that sends them within a deadline."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Final

import msgspec

from hub.fanout import text_frame
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

# The ASGI scope extension through which hub.server's protocol offers direct frame writes.
WRITE_FRAME_EXTENSION: Final = "status-hub.write_frame"

WriteFrame = Callable[[bytes], bool]
Send = Callable[[str], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]
_encoder = msgspec.json.Encoder()


class TooSlow(Exception):
    """The client did not take a frame within the send deadline."""


class LiveSocket:
    """Subscriptions and pending frames of one socket. ``offer`` is called by the broker for every
    published status and never blocks: it keeps only the newest unsent frame per agent, so a slow
    socket holds at most one frame per subscription and never delays anyone else.

    Deadlines (a send that takes too long, a ping that is due) are checked by one sweeper for all
    sockets (``sweep_sockets``) rather than a timer per send, which cost a fifth of the fan-out CPU."""

    __slots__ = (
        "_hub",
        "_pending",
        "_send",
        "_sender",
        "_subscriptions",
        "_versions",
        "_wakeup",
        "_write_frame",
        "close_connection",
        "flush_scheduled",
        "next_ping",
        "ping_due",
        "sending_since",
        "too_slow",
    )

    def __init__(self, hub: Hub, send: Send, close: Close, write_frame: WriteFrame | None = None) -> None:
        self._hub = hub
        self._send = send
        # Direct frame writes when the server offers them (hub.server); None under other servers.
        self._write_frame = write_frame
        self.flush_scheduled = False
        self.close_connection = close
        self._pending: dict[str, StatusFrame] = {}
        # The newest version this client has (sent, or that it told us it had).
        self._versions: dict[str, int] = {}
        # The broker subscription of each agent (None while it is being entered), exited by hand:
        # an AsyncExitStack per subscription cost more memory than everything else here.
        self._subscriptions: dict[str, AbstractAsyncContextManager[None] | None] = {}
        self._wakeup = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        # Loop time when the send in progress started; 0.0 while not sending.
        self.sending_since = 0.0
        self.next_ping = asyncio.get_running_loop().time() + hub.settings.ping_interval
        self.ping_due = False
        self.too_slow = False

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
            if not self.flush_scheduled:
                self.flush_scheduled = True
                self._hub.waker.schedule(self)

    def flush(self) -> None:
        """Write pending frames straight to the connection while it takes them; whatever is left
        (the transport pushes back, or no direct writes) goes to the sender task and its deadline."""
        self.flush_scheduled = False
        pending = self._pending
        if not pending or self.sending_since:
            return  # nothing to do, or the sender is mid-send and picks up what is pending next
        write = self._write_frame
        if write is not None:
            while pending:
                agent_id = next(iter(pending))
                frame = pending[agent_id]
                if not write(frame.wire):
                    break
                del pending[agent_id]
                self._versions[agent_id] = frame.version
            if not pending:
                return
        self._wakeup.set()

    async def subscribe(self, agent_id: str, known_version: int = 0) -> None:
        """Subscribe first, then read the snapshot: nothing published in between is missed, and
        the version filter in ``offer`` drops whatever the client already has."""
        if agent_id in self._subscriptions:
            self._versions[agent_id] = max(self._versions.get(agent_id, 0), known_version)
            return
        self._versions[agent_id] = known_version
        # Registered before entering: the broker may deliver while the subscribe is confirmed.
        self._subscriptions[agent_id] = None
        subscription = self._hub.broker.subscribe(self._hub.channel(agent_id), self.offer)
        try:
            # A failed or cancelled enter cleans up after itself; only an entered one is exited.
            await subscription.__aenter__()
            if agent_id in self._subscriptions:
                self._subscriptions[agent_id] = subscription
            else:  # unsubscribed while entering
                await subscription.__aexit__(None, None, None)
                return
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
        """Leave every subscription. Shielded: a second cancellation (a shutdown timeout) during
        this cleanup must not leave broker subscriptions that still hold this socket."""
        subscriptions = [s for s in self._subscriptions.values() if s is not None]
        self._subscriptions.clear()
        self._pending.clear()
        self._versions.clear()
        if subscriptions:
            await asyncio.shield(_leave_all(subscriptions))

    async def _forget(self, agent_id: str) -> None:
        subscription = self._subscriptions.pop(agent_id, None)
        self._pending.pop(agent_id, None)
        self._versions.pop(agent_id, None)
        if subscription is not None:
            await subscription.__aexit__(None, None, None)

    def check(self, now: float) -> None:
        """Called by the sweeper: cancel a send past its deadline, or mark a ping due."""
        settings = self._hub.settings
        if self.sending_since:
            if now - self.sending_since > settings.send_timeout and not self.too_slow and self._sender is not None:
                self.too_slow = True
                self._sender.cancel()
        elif now >= self.next_ping and not self.ping_due:
            self.next_ping = now + settings.ping_interval
            write = self._write_frame
            if write is not None and not self._pending and write(text_frame(self.ping_frame().encode())):
                return
            self.ping_due = True
            self._wakeup.set()

    async def run_sender(self) -> None:
        """Send pending frames as they come, and a ping when one is due. Run it in a task of its own:
        the sweeper cancels that task when a send overruns its deadline, and this raises TooSlow."""
        self._sender = asyncio.current_task()
        loop = asyncio.get_running_loop()
        pending, wakeup, interval = self._pending, self._wakeup, self._hub.settings.ping_interval
        try:
            while True:
                if not pending and not self.ping_due:
                    await wakeup.wait()
                    wakeup.clear()
                    continue
                if pending:
                    # Pop before the await: a newer version arriving during the send is pending again.
                    agent_id = next(iter(pending))
                    frame = pending.pop(agent_id)
                    self._versions[agent_id] = frame.version
                    text = frame.text
                else:
                    self.ping_due = False
                    text = self.ping_frame()
                self.sending_since = now = loop.time()
                self.next_ping = now + interval
                await self._send(text)
                self.sending_since = 0.0
        except asyncio.CancelledError:
            task = asyncio.current_task()
            # Only the sweeper's own cancellation becomes TooSlow; any other (the client left, the
            # server stops) propagates, even if it came on top of the sweeper's.
            if not self.too_slow or task is None or task.cancelling() > 1:
                raise
            task.uncancel()
            raise TooSlow(f"The client did not take a frame within {self._hub.settings.send_timeout} s.") from None

    def ping_frame(self) -> str:
        versions = {agent_id: self._versions.get(agent_id, 0) for agent_id in self._subscriptions}
        return _encoder.encode({"type": "ping", "versions": versions}).decode()


async def _leave_all(subscriptions: list[AbstractAsyncContextManager[None]]) -> None:
    for subscription in subscriptions:
        try:
            await subscription.__aexit__(None, None, None)
        except Exception:
            log.exception("Leaving a broker subscription failed.")


async def sweep_sockets(hub: Hub) -> None:
    """Check every open socket's deadlines a few times per second; never dies but by cancellation."""
    settings = hub.settings
    tick = min(1.0, settings.send_timeout / 2, settings.ping_interval / 2)
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(tick)
        now = loop.time()
        for socket in list(hub.sockets):
            try:
                socket.check(now)
            except Exception:
                log.exception("Checking a socket's deadlines failed; it is checked again next tick.")


def error_frame(agent_id: str | None, code: int, message: str) -> str:
    return _encoder.encode({"type": "error", "agentId": agent_id, "code": code, "message": message}).decode()
