"""Redis pub/sub with our own reader loop and failure policy.

Every loss of the pub/sub connection (error, server gone, silence) becomes a reconnect with
jittered backoff, a resubscription of every wanted channel, and a `Restored` event, forever,
until `stop()`. See redis_connection.py for why this does not use redis-py's `PubSub`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import NoReturn

import redis.asyncio
import redis.exceptions

from channels.backend import Event, EventQueue, Message, Restored
from channels.redis_connection import CONNECTION_LOST, PubSubConnection, Timing

logger = logging.getLogger(__name__)


class RedisBackend:
    """A `Backend` on Redis pub/sub over one dedicated connection.

    `client` is a ready client; the backend never closes it. Timeouts are in seconds:
    `idle_timeout` without any data sends a PING, and no answer within `ping_timeout` counts as a
    lost (half-open) connection. Reconnects wait `backoff_initial`, doubling, jittered, at most
    `backoff_max`. `max_pending` bounds the events waiting for the consumer; when reached the
    reader stops reading and Redis buffers (it drops us past its output limit, and we restore).
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        idle_timeout: float = 15.0,
        ping_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        max_pending: int = 10_000,
    ) -> None:
        self._timing = Timing(backoff_initial, backoff_max, idle_timeout, ping_timeout, connect_timeout)
        if not max_pending > 0:
            raise ValueError(f"max_pending must be greater than zero, got {max_pending!r}.")
        self._client = client
        self._queue = EventQueue(max_pending)
        # Channels the consumer wants, whether or not the server has them right now.
        self._wanted: set[str] = set()
        # The live connection, None while Redis is down. Set and read under _lock so that a
        # subscribe either lands in a reconnect's resubscription or is sent on the new connection.
        self._conn: PubSubConnection | None = None
        self._lock = asyncio.Lock()
        # Callers waiting for the server's confirmation of their (UN)SUBSCRIBE, per kind and channel,
        # in the order the commands were sent: Redis answers each one, in order.
        self._confirmations: dict[tuple[bytes, str], deque[asyncio.Future[None]]] = {}
        self._reader: asyncio.Task[NoReturn] | None = None
        self._started = False
        self._stopped = False

    @property
    def connected(self) -> bool:
        """Whether the pub/sub connection is up (for health checks and metrics)."""
        return self._conn is not None

    async def start(self) -> None:
        """Connect now if Redis answers, else keep connecting in the background: a process must be
        able to start during a Redis outage, as a running one survives it. Meanwhile subscribes are
        recorded, and once connected they are sent and reported `Restored` (so callers resync)."""
        if self._started:
            raise RuntimeError("The Redis backend was already started; a backend is started once.")
        self._started = True
        conn: PubSubConnection | None
        try:
            conn, _ = await self._open()
        except (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError):
            raise  # a wrong password or ACL is no outage: retrying would never help
        except CONNECTION_LOST as exc:
            reason = f"{type(exc).__name__}: {exc}"
            logger.warning("Redis pub/sub is unreachable at start-up (%s); connecting in the background.", reason)
            conn = None
        self._reader = asyncio.create_task(self._run(conn), name="channels-redis-reader")

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            # wait() rather than `await reader`: it does not raise the reader's CancelledError,
            # yet still propagates a cancellation of stop() itself.
            await asyncio.wait({reader})
        conn = self._forget_connection()
        if conn is not None:
            await conn.close()
        self._wanted.clear()
        self._queue.close()

    async def publish(self, channel: str, data: bytes) -> None:
        """Publish through the client (and its retry policy); raises a redis error if Redis is down."""
        await self._client.publish(channel, data)

    async def subscribe(self, channel: str) -> None:
        if not self._started or self._stopped:
            raise RuntimeError("Cannot subscribe: the Redis backend is not running (call start() first).")
        async with self._lock:
            self._wanted.add(channel)
            conn = self._conn
            if conn is None:
                # Redis is down. Failing or blocking the caller would not help it: the channel is
                # recorded as wanted, the reconnect subscribes it and yields Restored for it, and
                # the broker then resyncs it. Until then the caller's snapshot is all it gets.
                return
            confirmed = await self._send(conn, "SUBSCRIBE", channel)
        # Waited for outside the lock so that subscribes pipeline. A lost connection resolves it
        # (see _forget_connection): on a silent (half-open) one, within idle + ping timeouts.
        if confirmed is not None:
            await confirmed

    async def unsubscribe(self, channel: str) -> None:
        """Return once the server confirmed, so that it no longer counts us (PUBSUB NUMSUB)."""
        async with self._lock:
            self._wanted.discard(channel)
            conn = self._conn
            if conn is None:
                return
            confirmed = await self._send(conn, "UNSUBSCRIBE", channel)
        if confirmed is not None:
            await confirmed

    async def _send(self, conn: PubSubConnection, command: str, channel: str) -> asyncio.Future[None] | None:
        """Send (UN)SUBSCRIBE under _lock; the future of the server's confirmation, or None when the
        connection was lost on the way (the reader sees the loss too, and the reconnect subscribes
        exactly the wanted channels, so there is nothing to undo)."""
        confirmed = self._expect(command.lower().encode(), channel)
        try:
            # Shielded: redis-py closes the connection when a send is cancelled half-way,
            # which would turn one impatient caller into an outage for every channel.
            await asyncio.shield(conn.send(command, channel))
        except CONNECTION_LOST as exc:
            logger.debug("%s %s met a lost connection (%r); the reconnect takes it from here.", command, channel, exc)
            return None
        return confirmed

    def events(self) -> AsyncIterator[Event]:
        return self._queue.events()

    async def _open(self) -> tuple[PubSubConnection, tuple[str, ...]]:
        """Connect and resubscribe every wanted channel; return the channels sent."""
        conn = await PubSubConnection.open(self._client, self._timing)
        try:
            async with self._lock:
                channels = tuple(sorted(self._wanted))
                if channels:
                    await conn.send("SUBSCRIBE", *channels)
                self._conn = conn
        except BaseException:
            await conn.close()
            raise
        return conn, channels

    async def _run(self, conn: PubSubConnection | None) -> NoReturn:
        """Read until cancelled; on any loss reconnect with backoff, resubscribe and restore."""
        loop = asyncio.get_running_loop()
        restoring: tuple[str, ...] = ()
        failures = 0
        connected_at: float | None = loop.time() if conn is not None else None
        try:
            while True:
                try:
                    if conn is None:
                        conn, restoring = await self._open()
                        connected_at = loop.time()
                        logger.info("Reconnected to Redis pub/sub; resubscribing %d channel(s).", len(restoring))
                    await self._read(conn, restoring)
                except CONNECTION_LOST as exc:
                    reason: BaseException = exc
                except Exception as exc:
                    logger.exception("The Redis pub/sub reader failed unexpectedly; reconnecting.")
                    reason = exc
                # CancelledError is deliberately not caught: it comes from stop() (or the
                # event loop shutting down) and must end this task.
                lost = self._forget_connection()
                if lost is not None:
                    await lost.close()
                conn = None
                # A connection that stayed up for a while resets the backoff; one that drops right
                # after connecting does not, so a flapping server cannot cause a resync storm.
                if connected_at is not None and loop.time() - connected_at >= self._timing.backoff_max:
                    failures = 0
                connected_at = None
                delay = self._backoff(failures)
                failures += 1
                logger.warning(
                    "%s (%s: %s); reconnecting in %.2f s (attempt %d).",
                    "Lost the Redis pub/sub connection" if lost is not None else "Could not reconnect to Redis",
                    type(reason).__name__,
                    reason,
                    delay,
                    failures,
                )
                await asyncio.sleep(delay)
        finally:
            lost = self._forget_connection()
            if lost is not None:
                await lost.close()

    async def _read(self, conn: PubSubConnection, restoring: tuple[str, ...]) -> NoReturn:
        unconfirmed = set(restoring)
        while True:
            reply = await conn.read()
            if reply.kind == b"message":
                # Messages still in flight after an UNSUBSCRIBE are dropped here.
                if reply.channel in self._wanted:
                    await self._queue.put(Message(reply.channel, reply.data))
            elif reply.kind == b"subscribe" and reply.channel in unconfirmed:
                # The reconnect's SUBSCRIBE was sent before any other on this connection, so the
                # first confirmation of such a channel is the reconnect's own.
                unconfirmed.discard(reply.channel)
                if not unconfirmed:
                    await self._queue.put(Restored(restoring))
            elif reply.kind in (b"subscribe", b"unsubscribe"):
                self._confirm(reply.kind, reply.channel)
            else:
                logger.warning("Ignoring an unexpected reply on the Redis pub/sub connection: %r.", reply)

    def _expect(self, kind: bytes, channel: str) -> asyncio.Future[None]:
        """Register for the server's next confirmation of `kind` on `channel`; call under _lock."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault((kind, channel), deque()).append(waiter)
        return waiter

    def _confirm(self, kind: bytes, channel: str) -> None:
        waiters = self._confirmations.get((kind, channel))
        if not waiters:
            return
        waiter = waiters.popleft()
        if not waiters:
            del self._confirmations[(kind, channel)]
        if not waiter.done():  # a caller cancelled while waiting leaves a cancelled future
            waiter.set_result(None)

    def _forget_connection(self) -> PubSubConnection | None:
        """Mark the connection lost and release every caller waiting for a confirmation.

        Synchronous on purpose: no subscribe can slip in between the two steps. The released
        callers return normally; their channels stay wanted and the reconnect restores them.
        """
        conn, self._conn = self._conn, None
        for waiters in self._confirmations.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        self._confirmations.clear()
        return conn

    def _backoff(self, failures: int) -> float:
        return self._timing.backoff(failures)
