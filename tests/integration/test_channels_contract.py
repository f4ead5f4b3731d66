"""One suite, every backend: the broker's guarantees must not depend on the transport.

Each test runs against `MemoryBackend`, `RedisBackend` (real Redis at REDIS_URL) and
`RedisClusterBackend` (a private Redis Cluster of 3 primaries, see tests/support/redis_cluster.py).
Channel names carry a random prefix per test, so `PUBSUB CHANNELS <prefix>*` (`PUBSUB SHARDCHANNELS`
on every primary of the cluster) sees only this test's channels.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import redis.asyncio
from redis.asyncio.cluster import RedisCluster

from channels import Backend, Broker, Event, MemoryBackend, RedisBackend, RedisClusterBackend, channel_name
from tests.support.config import REDIS_URL
from tests.support.inbox import Inbox, pair
from tests.support.redis_cluster import LocalCluster, SharedCluster, cluster_client

WAIT = 10.0  # seconds; the bound of every wait in this file


class Transport:
    """A fresh backend, plus a view of the server's side for Redis (None for memory)."""

    def __init__(self, backend: Backend, server: redis.asyncio.Redis | None, prefix: str) -> None:
        self.backend = backend
        self.server = server
        self.prefix = prefix

    def channel(self, agent_id: object) -> str:
        return channel_name(self.prefix, str(agent_id))

    async def server_channels(self) -> set[str] | None:
        """Channels of this test that the Redis server has subscribers for."""
        if self.server is None:
            return None
        names = await self.server.pubsub_channels(f"{self.prefix}*")
        return {name.decode() if isinstance(name, bytes) else name for name in names}

    async def server_subscribers(self, channel: str) -> int | None:
        if self.server is None:
            return None
        [(_, count)] = await self.server.pubsub_numsub(channel)
        return int(count)


class ClusterTransport(Transport):
    """The server's side is every primary of the cluster: sharded channels live on their slot's."""

    def __init__(self, backend: Backend, cluster: LocalCluster, client: RedisCluster, prefix: str) -> None:
        super().__init__(backend, None, prefix)
        self.cluster = cluster
        self.client = client

    async def server_channels(self) -> set[str] | None:
        names: set[str] = set()
        for port in await self.cluster.primaries():
            async with self.cluster.node(port) as node:
                found = await node.execute_command("PUBSUB", "SHARDCHANNELS", f"{self.prefix}*")
                names.update(name.decode() for name in found)
        return names

    async def server_subscribers(self, channel: str) -> int | None:
        async with self.cluster.node(await self.cluster.primary_of(channel)) as node:
            _, count = await node.execute_command("PUBSUB", "SHARDNUMSUB", channel)
        return int(count)


@pytest.fixture
def prefix(channel_prefix: str) -> str:
    return f"{channel_prefix}{uuid.uuid4().hex[:8]}:"


@pytest.fixture(params=["memory", "redis", "cluster"])
async def transport(
    request: pytest.FixtureRequest, prefix: str, redis_cluster: SharedCluster
) -> AsyncIterator[Transport]:
    if request.param == "memory":
        yield Transport(MemoryBackend(), None, prefix)
        return
    if request.param == "cluster":
        cluster = await redis_cluster.get()
        async with cluster_client(cluster.seeds) as cluster_redis:
            transport = ClusterTransport(RedisClusterBackend(cluster_redis), cluster, cluster_redis, prefix)
            yield transport
            # Every connection it opened serves a node: the bound on pub/sub connections per process.
            assert transport.backend.connections <= len(cluster.ports)  # type: ignore[attr-defined]
        return
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        yield Transport(RedisBackend(client), client, prefix)
    finally:
        await client.aclose()


class GatedBackend:
    """The real backend, with one call parked on a gate at a chosen point.

    It makes "cancelled while entering (or leaving)" land where the test says, not by luck.
    """

    def __init__(self, inner: Backend, park: str) -> None:
        self._inner = inner
        self._park_at = park
        self.parked = asyncio.Event()
        self.gate = asyncio.Event()

    async def subscribe(self, channel: str) -> None:
        await self._park("before-subscribe")
        await self._inner.subscribe(channel)
        await self._park("after-subscribe")

    async def unsubscribe(self, channel: str) -> None:
        await self._park("unsubscribe")
        await self._inner.unsubscribe(channel)

    async def _park(self, point: str) -> None:
        if point == self._park_at and not self.gate.is_set():
            self.parked.set()
            await self.gate.wait()

    async def start(self) -> None:
        await self._inner.start()

    async def stop(self) -> None:
        await self._inner.stop()

    async def publish(self, channel: str, data: bytes) -> None:
        await self._inner.publish(channel, data)

    def events(self) -> AsyncIterator[Event]:
        return self._inner.events()


async def assert_settled(broker: Broker[Any], transport: Transport) -> None:
    """No local subscriber, no per-channel state left behind, nothing subscribed on the server."""
    assert broker.channels == frozenset()
    assert broker._channels == {}  # no registry of dead channels, no per-channel locks left
    assert await transport.server_channels() in (None, set())


async def test_publish_subscribe_roundtrip(transport: Transport) -> None:
    channel = transport.channel("a")
    async with Broker(transport.backend, pair) as broker:
        inbox = Inbox()
        async with broker.subscribe(channel, inbox.put):
            await broker.publish(channel, b"hello")
            assert await inbox.next() == (channel, b"hello")
            assert broker.channels == {channel}
            assert broker.subscriber_count(channel) == 1
            assert await transport.server_subscribers(channel) in (None, 1)


async def test_only_subscribed_channels_are_delivered(transport: Transport) -> None:
    wanted, other = transport.channel("wanted"), transport.channel("other")
    async with Broker(transport.backend, pair) as broker:
        inbox = Inbox()
        async with broker.subscribe(wanted, inbox.put):
            # Published first on the same path: had it been delivered, it would arrive first.
            await broker.publish(other, b"not for us")
            await broker.publish(wanted, b"for us")
            assert await inbox.next() == (wanted, b"for us")
            assert inbox.empty()
            assert broker.subscriber_count(other) == 0


async def test_decode_runs_once_per_message_whatever_the_subscriber_count(transport: Transport) -> None:
    channel = transport.channel("a")
    decoded: list[bytes] = []

    def decode(_: str, data: bytes) -> object:
        decoded.append(data)
        return object()  # identity shows every subscriber got the same decoded value

    async with Broker(transport.backend, decode) as broker, AsyncExitStack() as stack:
        inboxes = [Inbox() for _ in range(5)]
        for inbox in inboxes:
            await stack.enter_async_context(broker.subscribe(channel, inbox.put))
        for payload in (b"1", b"2"):
            await broker.publish(channel, payload)
            values = [await inbox.next() for inbox in inboxes]
            assert all(value is values[0] for value in values)
        assert decoded == [b"1", b"2"]


async def test_backend_subscription_is_reference_counted(transport: Transport) -> None:
    channel = transport.channel("a")
    async with Broker(transport.backend, pair) as broker:
        first, second = Inbox(), Inbox()
        async with broker.subscribe(channel, first.put):
            async with broker.subscribe(channel, second.put):
                assert broker.subscriber_count(channel) == 2
                assert await transport.server_subscribers(channel) in (None, 1)  # one per process
            assert broker.subscriber_count(channel) == 1
            await broker.publish(channel, b"still here")
            assert await first.next() == (channel, b"still here")
            assert second.empty()
        assert broker.subscriber_count(channel) == 0
        assert await transport.server_subscribers(channel) in (None, 0)
        await assert_settled(broker, transport)


async def test_the_same_callback_may_subscribe_twice(transport: Transport) -> None:
    channel = transport.channel("a")
    async with Broker(transport.backend, pair) as broker:
        inbox = Inbox()
        async with broker.subscribe(channel, inbox.put), broker.subscribe(channel, inbox.put):
            assert broker.subscriber_count(channel) == 2
            await broker.publish(channel, b"x")
            assert [await inbox.next(), await inbox.next()] == [(channel, b"x")] * 2
        await assert_settled(broker, transport)


async def test_an_exception_inside_the_subscription_cleans_up(transport: Transport) -> None:
    channel = transport.channel("a")
    async with Broker(transport.backend, pair) as broker:
        with pytest.raises(LookupError, match="boom"):
            async with broker.subscribe(channel, Inbox().put):
                raise LookupError("boom")
        await assert_settled(broker, transport)
        # The channel is usable again afterwards.
        inbox = Inbox()
        async with broker.subscribe(channel, inbox.put):
            await broker.publish(channel, b"again")
            assert await inbox.next() == (channel, b"again")


@pytest.mark.parametrize("park", ["before-subscribe", "after-subscribe"])
async def test_cancellation_while_entering_cleans_up(transport: Transport, park: str) -> None:
    channel = transport.channel("a")
    gated = GatedBackend(transport.backend, park)
    async with Broker(gated, pair) as broker:

        async def listen() -> None:
            async with broker.subscribe(channel, Inbox().put):
                pytest.fail("The subscription must not have been entered.")

        task = asyncio.create_task(listen())
        await asyncio.wait_for(gated.parked.wait(), WAIT)
        assert broker.subscriber_count(channel) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)
        await assert_settled(broker, transport)

        gated.gate.set()
        inbox = Inbox()
        async with broker.subscribe(channel, inbox.put):
            await broker.publish(channel, b"after")
            assert await inbox.next() == (channel, b"after")


async def test_cancellation_while_leaving_finishes_the_cleanup_first(transport: Transport) -> None:
    channel = transport.channel("a")
    gated = GatedBackend(transport.backend, "unsubscribe")
    async with Broker(gated, pair) as broker:

        async def listen() -> None:
            async with broker.subscribe(channel, Inbox().put):
                pass

        task = asyncio.create_task(listen())
        await asyncio.wait_for(gated.parked.wait(), WAIT)
        task.cancel()
        gated.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)
        # Once the cancelled task is done, the unsubscribe it started is done too.
        await assert_settled(broker, transport)


async def test_cancellation_inside_the_subscription_cleans_up(transport: Transport) -> None:
    channel = transport.channel("a")
    async with Broker(transport.backend, pair) as broker:
        entered = asyncio.Event()

        async def listen() -> None:
            async with broker.subscribe(channel, Inbox().put):
                entered.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(listen())
        await asyncio.wait_for(entered.wait(), WAIT)
        assert await transport.server_subscribers(channel) in (None, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)
        await assert_settled(broker, transport)


async def test_churn_with_cancellations_leaves_nothing_behind(transport: Transport) -> None:
    """1,000 subscribe/leave cycles over 100 channels, about a third cancelled while entering."""
    channels = [transport.channel(i) for i in range(100)]
    rng = random.Random(1234)
    async with Broker(transport.backend, pair) as broker:
        baseline = asyncio.all_tasks()

        async def cycle(channel: str) -> None:
            async with broker.subscribe(channel, Inbox().put):
                await asyncio.sleep(0)  # let other cycles interleave with this one

        tasks = [asyncio.create_task(cycle(channels[i % 100])) for i in range(1_000)]
        victims = [task for i, task in enumerate(tasks) if i % 3 == 0]
        rng.shuffle(victims)
        # Three waves, zero, one and two loop turns in: the cancellations land before entering,
        # while waiting for the backend (or for another cycle's subscribe of the same channel),
        # and inside the body or while leaving.
        for wave in range(3):
            for victim in victims[wave::3]:
                victim.cancel()
            await asyncio.sleep(0)
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)

        cancelled = sum(isinstance(result, asyncio.CancelledError) for result in results)
        assert 0 < cancelled <= len(victims)
        assert [r for r in results if r is not None and not isinstance(r, asyncio.CancelledError)] == []
        await assert_settled(broker, transport)
        assert asyncio.all_tasks() - baseline == set()


async def test_concurrent_first_subscribes_on_a_cold_broker_all_receive(transport: Transport) -> None:
    """The race in redis-py's PubSub.connect(), which left some channels subscribed on nothing: 1,000 first
    subscribes over 100 channels at once."""
    channels = [transport.channel(i) for i in range(100)]
    inboxes = [Inbox() for _ in range(1_000)]
    entered = 0
    all_entered = asyncio.Event()
    release = asyncio.Event()
    async with Broker(transport.backend, pair) as broker:

        async def listen(i: int) -> None:
            nonlocal entered
            async with broker.subscribe(channels[i % 100], inboxes[i].put):
                entered += 1
                if entered == len(inboxes):
                    all_entered.set()
                await release.wait()

        tasks = [asyncio.create_task(listen(i)) for i in range(len(inboxes))]
        try:
            await asyncio.wait_for(all_entered.wait(), 60)
            assert broker.channels == set(channels)
            assert await transport.server_channels() in (None, set(channels))
            for channel in channels:
                await broker.publish(channel, channel.encode())
            for i, inbox in enumerate(inboxes):
                channel = channels[i % 100]
                assert await inbox.next() == (channel, channel.encode())
        finally:
            release.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
        await assert_settled(broker, transport)


async def test_a_failing_subscriber_does_not_affect_the_others(
    transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    channel = transport.channel("a")

    def broken(_: object) -> None:
        raise RuntimeError("subscriber bug")

    async with Broker(transport.backend, pair) as broker:
        before, after = Inbox(), Inbox()
        async with (
            broker.subscribe(channel, before.put),
            broker.subscribe(channel, broken),
            broker.subscribe(channel, after.put),
        ):
            with caplog.at_level(logging.ERROR, logger="channels.broker"):
                await broker.publish(channel, b"1")
                assert await before.next() == (channel, b"1")
                assert await after.next() == (channel, b"1")
                await broker.publish(channel, b"2")  # the listener survived
                assert await before.next() == (channel, b"2")
                assert await after.next() == (channel, b"2")
    failures = [r for r in caplog.records if r.name == "channels.broker" and r.exc_info]
    assert len(failures) == 2
    assert all("failed to take a message" in r.getMessage() for r in failures)


async def test_a_message_that_cannot_be_decoded_is_dropped(
    transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    channel = transport.channel("a")

    def decode(channel: str, data: bytes) -> tuple[str, bytes]:
        if data == b"garbage":
            raise ValueError("not a snapshot")
        return channel, data

    async with Broker(transport.backend, decode) as broker:
        inbox = Inbox()
        async with broker.subscribe(channel, inbox.put):
            with caplog.at_level(logging.ERROR, logger="channels.broker"):
                await broker.publish(channel, b"garbage")
                await broker.publish(channel, b"good")
                assert await inbox.next() == (channel, b"good")
    assert any("Could not decode" in r.getMessage() for r in caplog.records)


async def test_subscribing_before_the_broker_started_is_an_error(transport: Transport) -> None:
    broker = Broker(transport.backend, pair)
    with pytest.raises(RuntimeError, match="start"):
        async with broker.subscribe(transport.channel("a"), Inbox().put):
            pass
    assert broker._channels == {}


async def test_stop_ends_events_and_is_idempotent(transport: Transport) -> None:
    backend = transport.backend
    await backend.start()
    events = backend.events()

    async def first() -> Event:
        return await anext(events)

    waiting = asyncio.create_task(first())
    await asyncio.sleep(0)  # let it block inside events() before stopping (not a synchronisation)
    await backend.stop()
    await backend.stop()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, WAIT)
    with pytest.raises(RuntimeError, match="not running"):
        await backend.subscribe(transport.channel("a"))
    await backend.unsubscribe(transport.channel("a"))  # never raises
