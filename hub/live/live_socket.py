"""One dashboard socket's live state: what it watches (subscriptions), what it owes the client (a
latest-wins outbox), and the sender that delivers it within a deadline (a send clock)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

from hub.domain.frames import CLOSE_UNAUTHENTICATED, StatusFrame, ping_message, status_frame, text_frame
from hub.live.deadlines import SendClock
from hub.live.outbox import Outbox
from hub.live.subscriptions import Subscriptions
from hub.runtime import Hub

MAX_SUBSCRIPTIONS: Final = 1000
# How long a too-slow client has to take what is already buffered and then the 4408 close frame.
CLOSE_GRACE: Final = 30.0

# The ASGI scope extension through which the hub's uvicorn protocol (hub.live.transport) offers
# direct frame writes: write a complete frame now if the transport takes it, else return False.
WRITE_FRAME_EXTENSION: Final = "status-hub.write_frame"

WriteFrame = Callable[[bytes], bool]
Send = Callable[[str], Awaitable[None]]
Close = Callable[[int, str], Coroutine[Any, Any, None]]


class TooSlow(Exception):
    """The client did not take a frame within the send deadline."""


class LiveSocket:
    """Ties one socket's parts together. ``offer`` is called by the broker for every published status
    and never blocks: the outbox keeps only the newest unsent frame per agent, and the socket is
    flushed by the hub's waker, straight to the transport while it takes frames. What the transport
    does not take goes to the sender task, whose send the sweeper (``check``) holds to a deadline."""

    __slots__ = (
        "_clock",
        "_closing",
        "_expires",
        "_hub",
        "_outbox",
        "_send",
        "_sender",
        "_subscriptions",
        "_wakeup",
        "_write_frame",
        "close_connection",
        "flush_scheduled",
    )

    def __init__(
        self, hub: Hub, send: Send, close: Close, write_frame: WriteFrame | None = None, *, expires_at: float
    ) -> None:
        """``expires_at``: when the socket's token expires (seconds since the epoch)."""
        self._hub = hub
        self._send = send
        # Direct frame writes when the server offers them (hub.live.transport); None under other servers.
        self._write_frame = write_frame
        self.close_connection = close
        self.flush_scheduled = False
        self._outbox = Outbox()
        self._subscriptions = Subscriptions()
        now = asyncio.get_running_loop().time()
        self._clock = SendClock(now, hub.settings.ping_interval)
        # The token's expiry on the loop's clock, which the sweeper reads.
        self._expires = now + (expires_at - time.time())
        self._closing: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None

    @property
    def pending_count(self) -> int:
        return len(self._outbox)

    @property
    def watch_count(self) -> int:
        return len(self._subscriptions)

    def watches(self, agent_id: str) -> bool:
        return agent_id in self._subscriptions

    def know(self, agent_id: str, version: int) -> None:
        """The client says it has ``version`` of an agent this socket already watches."""
        self._outbox.know(agent_id, version)

    def held_versions(self) -> dict[str, int]:
        """For the reconcile: the version of each watched agent this client has or is about to get."""
        return self._outbox.held()

    def offer(self, frame: StatusFrame) -> None:
        if frame.agent_id not in self._subscriptions:
            return  # a frame racing with an unsubscribe
        if self._outbox.offer(frame) and not self.flush_scheduled:
            self.flush_scheduled = True
            self._hub.waker.schedule(self)

    def flush(self) -> None:
        """Write pending frames straight to the connection while it takes them; whatever is left
        (the transport pushes back, or no direct writes) goes to the sender task and its deadline."""
        self.flush_scheduled = False
        if not self._outbox or self._clock.sending_since is not None:
            return  # nothing to do, or the sender is mid-send and picks up what is pending next
        if self._write_frame is not None:
            self._hub.metrics.frames_written += self._outbox.write_while(self._write_frame)
            if not self._outbox:
                return
        self._wakeup.set()

    async def subscribe(self, agent_id: str, known_version: int = 0) -> None:
        """Subscribe first, then read the snapshot: nothing published in between is missed, and the
        outbox drops whatever the client already has."""
        if agent_id in self._subscriptions:
            self.know(agent_id, known_version)
            return
        self._outbox.start(agent_id, known_version)
        subscription = self._hub.broker.subscribe(self._hub.channel(agent_id), self.offer)
        try:
            if not await self._subscriptions.enter(agent_id, subscription):
                return  # unsubscribed while entering
            snapshot = await self._hub.snapshot(agent_id)
        except BaseException:
            # Includes cancellation mid-subscribe: leave nothing behind.
            await self.unsubscribe(agent_id)
            raise
        if snapshot is not None:
            self.offer(status_frame("", snapshot))

    async def unsubscribe(self, agent_id: str) -> None:
        self._outbox.forget(agent_id)
        await self._subscriptions.leave(agent_id)

    async def unsubscribe_all(self) -> None:
        """The socket has ended: leave everything, and stop a token-expiry close still in progress."""
        if self._closing is not None:
            self._closing.cancel()
        self._outbox.clear()
        await self._subscriptions.leave_all()

    def check(self, now: float) -> None:
        """Called by the sweeper: close a socket whose token expired, cancel a send past its
        deadline, or ping an idle socket."""
        settings, clock = self._hub.settings, self._clock
        if now >= self._expires and self._closing is None:
            reason = "The token has expired; reconnect with a new one."
            self._closing = asyncio.create_task(self.close_connection(CLOSE_UNAUTHENTICATED, reason))
        # Checked after an expiry too: a client that stopped reading must not escape the deadline.
        if clock.send_overdue(now, settings.send_timeout):
            if self._sender is not None:
                self._sender.cancel()
        elif self._closing is None and clock.ping_due(now, settings.ping_interval):
            write = self._write_frame
            if write is not None and not self._outbox and write(text_frame(self.ping_frame().encode())):
                return
            clock.ping_owed = True
            self._wakeup.set()

    async def run_sender(self) -> None:
        """Send pending frames as they come, and a ping when one is owed. Run it in a task of its own:
        the sweeper cancels that task when a send overruns its deadline, and this raises TooSlow."""
        self._sender = asyncio.current_task()
        loop = asyncio.get_running_loop()
        outbox, clock, wakeup, metrics = self._outbox, self._clock, self._wakeup, self._hub.metrics
        interval = self._hub.settings.ping_interval
        try:
            while True:
                frame = outbox.take()
                if frame is not None:
                    text = frame.text
                elif clock.ping_owed:
                    clock.ping_owed = False
                    text = self.ping_frame()
                else:
                    await wakeup.wait()
                    wakeup.clear()
                    continue
                clock.start_send(loop.time(), interval)
                sent = False
                try:
                    await self._send(text)
                    sent = True
                finally:
                    if frame is not None:
                        metrics.frames_written += sent
                        if frame.delivery is not None:
                            frame.delivery.release(sent)
                clock.end_send()
        except asyncio.CancelledError:
            if not self._sweeper_cancelled():
                raise
            raise TooSlow(f"The client did not take a frame within {self._hub.settings.send_timeout} s.") from None
        finally:
            # The task keeps its exception, whose traceback holds this frame and so this socket: a
            # reference cycle that only a full collection would free.
            self._sender = None

    def _sweeper_cancelled(self) -> bool:
        """True (and the cancellation withdrawn) when only the sweeper cancelled the sender: any other
        cancellation (the client left, the server stops) propagates, even on top of the sweeper's.
        A method of its own so that no frame in the raised exception's traceback holds the task."""
        task = asyncio.current_task()
        if not self._clock.expired or task is None or task.cancelling() > 1:
            return False
        task.uncancel()
        return True

    def ping_frame(self) -> str:
        return ping_message(self._outbox.versions(self._subscriptions.agent_ids))
