"""Redis goes away and comes back: the broker resyncs every channel someone still listens to.

These tests break a private redis-server (tests/support/redis_server.py), never the shared one.
Waits are bounded; "the backend noticed the loss" is observed through its warning log record.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import pytest
import redis.asyncio

from channels import Broker, RedisBackend, channel_name
from tests.support.inbox import Inbox, pair
from tests.support.redis_server import RedisServer

WAIT = 10.0  # seconds; the bound of every wait in this file


def fast_backend(client: redis.asyncio.Redis, *, half_open_after: float | None = None) -> RedisBackend:
    """Quick reconnects, so that the tests do not wait on backoff; optionally quick PING checks."""
    if half_open_after is None:
        return RedisBackend(client, backoff_initial=0.02, backoff_max=0.2)
    timeout = half_open_after / 2
    return RedisBackend(
        client,
        backoff_initial=0.02,
        backoff_max=0.2,
        idle_timeout=timeout,
        ping_timeout=timeout,
        connect_timeout=timeout,
    )


class Resyncs:
    """A resync callback that counts its calls and lets a test wait for a set of channels."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._changed = asyncio.Event()

    async def __call__(self, channel: str) -> bytes:
        self.calls[channel] += 1
        self._changed.set()
        return b"snapshot"

    async def wait_for(self, channels: set[str]) -> None:
        async def all_called() -> None:
            while not channels <= set(self.calls):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(all_called(), WAIT)


class LogWatch(logging.Handler):
    """Sets an event when a record whose message contains `text` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self._text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self._text in record.getMessage():
            self.seen.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self.seen.wait(), WAIT)


@pytest.fixture
async def server() -> AsyncIterator[RedisServer]:
    async with RedisServer() as server:
        yield server


@pytest.fixture
async def client(server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(server.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def lost() -> Iterator[LogWatch]:
    """Fires when the backend reports a lost pub/sub connection."""
    watch = LogWatch("Lost the Redis pub/sub connection")
    logger = logging.getLogger("channels.redis_backend")
    logger.addHandler(watch)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}:"


async def test_restart_resyncs_each_listened_channel_once_and_delivery_resumes(
    server: RedisServer, client: redis.asyncio.Redis, prefix: str
) -> None:
    busy, quiet, left = (channel_name(prefix, name) for name in ("busy", "quiet", "left"))
    resyncs = Resyncs()
    async with Broker(fast_backend(client), pair, resyncs) as broker, AsyncExitStack() as stack:
        busy_1, busy_2, quiet_1 = Inbox(), Inbox(), Inbox()
        await stack.enter_async_context(broker.subscribe(busy, busy_1.put))
        await stack.enter_async_context(broker.subscribe(busy, busy_2.put))
        await stack.enter_async_context(broker.subscribe(quiet, quiet_1.put))
        async with broker.subscribe(left, Inbox().put):
            pass  # no local subscriber any more: must not be resynced

        await server.restart()  # SIGKILL, then an empty server on the same port

        await resyncs.wait_for({busy, quiet})
        # The resync snapshot reaches every local subscriber of the channel.
        assert await busy_1.next() == (busy, b"snapshot")
        assert await busy_2.next() == (busy, b"snapshot")
        assert await quiet_1.next() == (quiet, b"snapshot")

        await broker.publish(busy, b"after")
        await broker.publish(quiet, b"after")
        assert await busy_1.next() == (busy, b"after")
        assert await busy_2.next() == (busy, b"after")
        assert await quiet_1.next() == (quiet, b"after")
        # One call per channel, shared by its local subscribers; none for the channel left.
        assert resyncs.calls == {busy: 1, quiet: 1}


async def test_subscribing_while_redis_is_down_works_once_it_is_back(
    server: RedisServer, client: redis.asyncio.Redis, prefix: str, lost: LogWatch
) -> None:
    channel = channel_name(prefix, "late")
    resyncs = Resyncs()
    async with Broker(fast_backend(client), pair, resyncs) as broker:
        await server.kill()
        await lost.wait()
        inbox = Inbox()
        async with AsyncExitStack() as stack:
            # Returns promptly although Redis is down: the channel is recorded as wanted.
            async with asyncio.timeout(WAIT):
                await stack.enter_async_context(broker.subscribe(channel, inbox.put))
            with pytest.raises(redis.exceptions.ConnectionError):
                await broker.publish(channel, b"while down")

            await server.start()
            await resyncs.wait_for({channel})
            assert await inbox.next() == (channel, b"snapshot")
            await broker.publish(channel, b"back")
            assert await inbox.next() == (channel, b"back")
        assert broker.channels == frozenset()


async def test_a_half_open_connection_is_detected_by_ping(
    server: RedisServer, client: redis.asyncio.Redis, prefix: str, lost: LogWatch
) -> None:
    channel = channel_name(prefix, "frozen")
    resyncs = Resyncs()
    backend = fast_backend(client, half_open_after=0.4)
    async with Broker(backend, pair, resyncs) as broker:
        inbox = Inbox()
        async with broker.subscribe(channel, inbox.put):
            server.pause()  # the socket stays open, nothing answers: no error ever reaches us
            try:
                await lost.wait()
            finally:
                server.resume()
            await resyncs.wait_for({channel})
            assert await inbox.next() == (channel, b"snapshot")
            await broker.publish(channel, b"thawed")
            assert await inbox.next() == (channel, b"thawed")


async def test_leaving_the_broker_is_prompt_while_it_backs_off(
    server: RedisServer, client: redis.asyncio.Redis, prefix: str, lost: LogWatch
) -> None:
    channel = channel_name(prefix, "a")
    # The first reconnect would only happen 15 to 30 s after the loss.
    broker = Broker(RedisBackend(client, backoff_initial=30.0, backoff_max=60.0), pair)
    baseline = asyncio.all_tasks()
    await broker.__aenter__()
    try:
        async with broker.subscribe(channel, Inbox().put):
            await server.kill()
            await lost.wait()
    finally:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(broker.__aexit__(None, None, None), WAIT)
        assert loop.time() - started < 1.0
    assert asyncio.all_tasks() - baseline == set()


async def test_a_backend_started_while_redis_is_down_subscribes_once_it_is_up(
    server: RedisServer, client: redis.asyncio.Redis, prefix: str
) -> None:
    channel = channel_name(prefix, "born-in-an-outage")
    await server.kill()
    resyncs = Resyncs()
    inbox = Inbox()
    # Starts (rather than raising) although nothing answers on the port yet.
    async with asyncio.timeout(WAIT), Broker(fast_backend(client), pair, resyncs) as broker:
        subscription = broker.subscribe(channel, inbox.put)
        async with subscription:
            await server.start()  # the same port
            await resyncs.wait_for({channel})
            assert await inbox.next() == (channel, b"snapshot")
            await broker.publish(channel, b"live")
            assert await inbox.next() == (channel, b"live")
