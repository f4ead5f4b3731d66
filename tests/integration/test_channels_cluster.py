"""The cluster backend's own failure policy, on a private Redis Cluster: bounded connections, and a
subscribe that meets a stale slot map (MOVED) still ends subscribed where the slot lives, resynced.

The rest of its contract is the shared suite (test_channels_contract.py); failover and migration with
real hub replicas are in test_cluster.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from redis.crc import key_slot

from channels import Broker, RedisClusterBackend, channel_name
from tests.integration.test_channels_redis_outage import Resyncs
from tests.support.inbox import Inbox, pair
from tests.support.redis_cluster import LocalCluster, SharedCluster, cluster_client


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def own_cluster() -> AsyncIterator[LocalCluster]:
    async with LocalCluster() as cluster:
        yield cluster


async def test_connections_stay_bounded_by_the_nodes_while_channels_spread_over_every_shard(
    redis_cluster: SharedCluster, prefix: str
) -> None:
    cluster = await redis_cluster.get()
    channels = [channel_name(prefix, str(i)) for i in range(300)]
    async with cluster_client(cluster.seeds) as client:
        backend = RedisClusterBackend(client)
        async with Broker(backend, pair) as broker, AsyncExitStack() as stack:
            inbox = Inbox()
            for channel in channels:
                await stack.enter_async_context(broker.subscribe(channel, inbox.put))
            assert backend.connections == len(await cluster.primaries()) == 3
            shards = {await cluster.primary_of(channel) for channel in channels}
            assert shards == set(await cluster.primaries())
            for channel in channels:
                await broker.publish(channel, b"x")
            assert sorted([(await inbox.next())[0] for _ in channels]) == sorted(channels)
            assert backend.connected


async def test_a_subscribe_answered_moved_is_resubscribed_where_the_slot_lives_and_resynced(
    own_cluster: LocalCluster, prefix: str
) -> None:
    channel = channel_name(prefix, "moved")
    slot = key_slot(channel.encode())
    resyncs = Resyncs()
    async with cluster_client(own_cluster.seeds) as client:
        backend = RedisClusterBackend(client, backoff_initial=0.02, backoff_max=0.2)
        async with Broker(backend, pair, resyncs) as broker:
            # The slot moves while nothing is subscribed to it: the backend's slot map is now stale.
            source = await own_cluster.primary_of_slot(slot)
            target = next(port for port in await own_cluster.primaries() if port != source)
            await own_cluster.migrate_slot(slot, to=target)

            inbox = Inbox()
            async with broker.subscribe(channel, inbox.put):
                # SSUBSCRIBE went to the old node, which answered MOVED; the channel is put on the new
                # node and reported restored, so the broker resyncs it.
                await resyncs.wait_for({channel})
                assert await inbox.next() == (channel, b"snapshot")
                async with own_cluster.node(target) as node:
                    assert (await node.execute_command("PUBSUB", "SHARDNUMSUB", channel))[1] == 1
                await broker.publish(channel, b"live")
                assert await inbox.next() == (channel, b"live")
            assert backend.connected
