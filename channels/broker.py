"""Per-process fan-out: one backend subscription per channel, shared by its local subscribers."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from channels.backend import Backend, Message

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _Backend(enum.Enum):
    """What the backend knows of one channel."""

    UNSUBSCRIBED = enum.auto()
    SUBSCRIBED = enum.auto()
    # A subscribe failed or was cancelled half-way: the server may or may not have it.
    UNKNOWN = enum.auto()


class _Subscriber(Generic[T]):
    """Compared by identity, so one callable may be subscribed twice and leave twice."""

    __slots__ = ("deliver",)

    def __init__(self, deliver: Callable[[T], None]) -> None:
        self.deliver = deliver


class _Channel(Generic[T]):
    """State of one channel; it exists only while the channel has subscribers or pending work."""

    __slots__ = ("backend", "busy", "lock", "subscribers")

    def __init__(self) -> None:
        self.subscribers: set[_Subscriber[T]] = set()
        self.backend = _Backend.UNSUBSCRIBED
        # Serialises backend subscribe/unsubscribe of this channel.
        self.lock = asyncio.Lock()
        # Tasks inside _reconcile (holding or waiting for the lock): the entry must outlive them.
        self.busy = 0


class Broker(Generic[T]):
    """Fans messages of a `Backend` out to local subscribers, decoding each message once.

    `decode(channel, data)` runs once per message, then every local subscriber's `deliver(value)`,
    then `dispatched(value)` when given; all must be quick and must not block. `resync(channel)`
    returns a fresh snapshot (or None) after the backend reports a lost-and-restored subscription;
    at most `resync_limit` run at once.
    """

    def __init__(
        self,
        backend: Backend,
        decode: Callable[[str, bytes], T],
        resync: Callable[[str], Awaitable[bytes | None]] | None = None,
        *,
        resync_limit: int = 16,
        dispatched: Callable[[T], None] | None = None,
    ) -> None:
        if resync_limit < 1:
            raise ValueError(f"resync_limit must be at least 1, got {resync_limit}.")
        self._backend = backend
        self._decode = decode
        self._resync = resync
        self._resync_limit = resync_limit
        self._dispatched = dispatched
        self._channels: dict[str, _Channel[T]] = {}
        self._listener: asyncio.Task[None] | None = None
        # Cleanups that outlived a cancelled caller, and resyncs in flight: awaited or cancelled
        # on exit so that no task outlives the broker.
        self._cleanups: set[asyncio.Task[None]] = set()
        self._resyncs: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        await self._backend.start()
        self._listener = asyncio.create_task(self._listen(), name="channels-broker-listener")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks = list(self._resyncs)
        if self._listener is not None:
            tasks.append(self._listener)
            self._listener = None
        for task in tasks:
            task.cancel()
        # Cleanups are short (a lock and one command) and leave the backend consistent: let them
        # finish rather than cancel them half-way.
        tasks.extend(self._cleanups)
        if tasks:
            await asyncio.wait(tasks)
        await self._backend.stop()

    @property
    def channels(self) -> frozenset[str]:
        """Channels with at least one local subscriber."""
        return frozenset(name for name, channel in self._channels.items() if channel.subscribers)

    def subscriber_count(self, channel: str) -> int:
        state = self._channels.get(channel)
        return len(state.subscribers) if state is not None else 0

    async def publish(self, channel: str, data: bytes) -> None:
        await self._backend.publish(channel, data)

    def subscribe(self, channel: str, deliver: Callable[[T], None]) -> AbstractAsyncContextManager[None]:
        """Deliver every message on `channel` to `deliver` while the context is open.

        Entering returns once the backend subscription is live, so a snapshot read afterwards
        misses nothing (with Redis down it returns at once; a resync follows when it is back).
        `deliver` may already be called while entering. Leaving, by any exit (cancellation while
        entering included), drops the backend subscription when this was the last local subscriber.
        """
        return self._subscription(channel, deliver)

    @asynccontextmanager
    async def _subscription(self, channel: str, deliver: Callable[[T], None]) -> AsyncIterator[None]:
        # Lookup, creation and registration happen in one step (no await), so the entry cannot be
        # dropped between them.
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
        subscriber = _Subscriber(deliver)
        # Registered before the backend subscribes: a message that arrives right after the
        # confirmation can only be delivered, never missed.
        state.subscribers.add(subscriber)
        try:
            await self._reconcile(channel, state)
            yield
        finally:
            state.subscribers.discard(subscriber)
            await self._settle(channel, state)

    async def _reconcile(self, channel: str, state: _Channel[T]) -> None:
        """Bring the backend in line with whether the channel has local subscribers *now*.

        Every change to the subscriber set is followed by a reconcile, and reconciles of a channel
        run one at a time, so the last one to run sees the final set: whatever the interleaving of
        joins, leaves and cancellations, the backend ends up subscribed iff someone listens.
        """
        state.busy += 1
        try:
            async with state.lock:
                if state.subscribers:
                    if state.backend is not _Backend.SUBSCRIBED:
                        # Until the subscribe returns, a cancellation may leave it done or not.
                        state.backend = _Backend.UNKNOWN
                        await self._backend.subscribe(channel)
                        state.backend = _Backend.SUBSCRIBED
                elif state.backend is not _Backend.UNSUBSCRIBED:
                    try:
                        await self._backend.unsubscribe(channel)
                    finally:
                        # Even if it failed: retrying forever would keep the entry alive, and the
                        # backend does not resubscribe unwanted channels after a reconnect.
                        state.backend = _Backend.UNSUBSCRIBED
        finally:
            state.busy -= 1
            idle = not state.busy and not state.subscribers and state.backend is _Backend.UNSUBSCRIBED
            if idle and self._channels.get(channel) is state:
                del self._channels[channel]

    async def _settle(self, channel: str, state: _Channel[T]) -> None:
        """Reconcile after a subscriber left, even if the leaving task is cancelled meanwhile."""
        if state.subscribers and state.backend is _Backend.SUBSCRIBED:
            return  # others still listen on a live subscription: nothing to change
        task = self._spawn(self._settle_logged(channel, state), self._cleanups, f"channels-settle:{channel}")
        try:
            # Shielded: cancelling the leaving task must not abandon the unsubscribe half-way.
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # Finish the (short) cleanup before propagating the cancellation, so that "the
            # context has exited" still means "the backend is settled". A second cancellation
            # lands here too; the task then finishes on its own and __aexit__ waits for it.
            await asyncio.wait({task})
            raise

    async def _settle_logged(self, channel: str, state: _Channel[T]) -> None:
        try:
            await self._reconcile(channel, state)
        except Exception:
            logger.exception("Could not update the backend subscription of channel %s.", channel)

    async def _listen(self) -> None:
        """Dispatch backend events until cancelled; survive any other error."""
        failures = 0
        while True:
            try:
                events = self._backend.events()
                try:
                    async for event in events:
                        failures = 0
                        if isinstance(event, Message):
                            self._dispatch(event.channel, event.data)
                        else:
                            self._start_resync(event.channels)
                finally:
                    # A cancelled listener must not leave the generator for the GC to finalise.
                    close = getattr(events, "aclose", None)
                    if close is not None:
                        await close()
                return  # events() ends only when the backend was stopped
            # CancelledError is not an Exception: it ends this task, as it must on __aexit__.
            except Exception:
                delay = min(5.0, 0.1 * 2 ** min(failures, 6))
                failures += 1
                logger.exception("The broker listener failed; restarting it in %.1f s.", delay)
                await asyncio.sleep(delay)

    def _dispatch(self, channel: str, data: bytes) -> None:
        state = self._channels.get(channel)
        if state is None or not state.subscribers:
            return
        try:
            value = self._decode(channel, data)
        except Exception:
            logger.exception("Could not decode a message on channel %s; dropping it.", channel)
            return
        # A snapshot: a deliver callback may make subscribers leave (or join) while we iterate.
        for subscriber in tuple(state.subscribers):
            try:
                subscriber.deliver(value)
            except Exception:
                logger.exception("A subscriber of channel %s failed to take a message.", channel)
        if self._dispatched is not None:
            try:
                self._dispatched(value)
            except Exception:
                logger.exception("The dispatched hook failed on channel %s.", channel)

    def _start_resync(self, restored: tuple[str, ...]) -> None:
        channels = [channel for channel in restored if self.subscriber_count(channel)]
        if self._resync is None or not channels:
            return
        # In a task of its own: live messages keep flowing while snapshots are fetched.
        self._spawn(self._resync_all(channels), self._resyncs, "channels-resync")

    async def _resync_all(self, channels: list[str]) -> None:
        pending = deque(channels)

        async def worker() -> None:
            while pending:
                await self._resync_one(pending.popleft())

        await asyncio.gather(*(worker() for _ in range(min(self._resync_limit, len(pending)))))

    async def _resync_one(self, channel: str) -> None:
        if self._resync is None or not self.subscriber_count(channel):
            return  # everyone left meanwhile
        try:
            data = await self._resync(channel)
        except Exception:
            logger.exception("Could not resync channel %s after the subscription was restored.", channel)
            return
        if data is not None:
            self._dispatch(channel, data)

    @staticmethod
    def _spawn(coro: Coroutine[Any, Any, None], registry: set[asyncio.Task[None]], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        registry.add(task)
        task.add_done_callback(registry.discard)
        return task
