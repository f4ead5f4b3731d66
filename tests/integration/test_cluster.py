"""Two hub replicas on a Redis Cluster: delivery across every shard, a primary killed, a slot migrated.

The replicas are real `status-hub serve` processes with HUB_REDIS_CLUSTER_NODES; callbacks go to one,
dashboards' sockets are on the other, so every update crosses the cluster. The reconcile timer is set
far beyond the tests' length: a socket that catches up does so through the cluster backend's own
resubscribe-and-resync, not through the reconcile's backstop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import httpx
from redis.crc import key_slot
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection

from channels import channel_name
from hub.settings import Settings
from tests.support.api import Api
from tests.support.process import Replica, hub_environment, hub_process
from tests.support.redis_cluster import LocalCluster, SharedCluster
from tests.support.waiting import wait_until
from tests.support.ws import next_status, open_socket

WAIT = 30.0  # seconds; the bound of every wait on the cluster's recovery in this file


@dataclass
class Watched:
    """One agent, its socket on the second replica, and the versions that socket received."""

    agent_id: str
    job_id: str
    shard: int  # the port of the primary holding its channel's slot when the test started
    received: list[tuple[float, int]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def latest(self) -> int:
        return self.received[-1][1] if self.received else 0

    async def reaches(self, version: int, timeout: float = WAIT) -> float:
        """Wait until the socket holds `version` (or newer); when it first did (monotonic seconds)."""

        async def until() -> float:
            while True:
                for at, seen in self.received:
                    if seen >= version:
                        return at
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(until(), timeout)


@asynccontextmanager
async def hub_pair(settings: Settings, cluster: LocalCluster) -> AsyncIterator[tuple[Replica, Replica]]:
    on_cluster = dataclasses.replace(settings, redis_url=None, redis_cluster_nodes=tuple(cluster.seeds.split(",")))
    env = hub_environment(on_cluster, HUB_RECONCILE_INTERVAL="3600")
    async with hub_process(env) as first, hub_process(env) as second:
        yield first, second


async def agents_on_every_shard(
    api: Api, cluster: LocalCluster, prefix: str, *, per_shard: int = 1, on: int | None = None, more_on: int = 0
) -> list[Watched]:
    """Provision agents until every primary holds `per_shard` of their channels (`on` holds
    `per_shard + more_on`)."""
    primaries = await cluster.primaries()
    wanted = {port: per_shard + (more_on if port == on else 0) for port in primaries}
    found: list[Watched] = []
    for _ in range(200):
        if all(sum(w.shard == port for w in found) >= count for port, count in wanted.items()):
            return found
        agent_id, job_id = await api.new_job()
        shard = await cluster.primary_of(channel_name(prefix, agent_id))
        if sum(w.shard == shard for w in found) < wanted[shard]:
            found.append(Watched(agent_id, job_id, shard))
    raise AssertionError(f"200 agents did not cover every shard as asked: {wanted}.")


async def watch(base: str, agents: list[Watched], stack: AsyncExitStack) -> None:
    """Open one socket per agent on `base`, read its first snapshot, then record what follows."""
    for agent in agents:
        ws = await stack.enter_async_context(open_socket(base, f"/api/agents/{agent.agent_id}/instance/ws"))
        first = await next_status(ws)
        agent.received.append((time.monotonic(), first["version"]))
        task = asyncio.create_task(_record(ws, agent))
        stack.push_async_callback(_stop, task)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _record(ws: ClientConnection, agent: Watched) -> None:
    while True:
        status = await next_status(ws, timeout=3600)
        agent.received.append((time.monotonic(), status["version"]))
        agent.changed.set()


class Driver:
    """Heartbeats for every agent, round robin, through one replica, as fast as they are answered."""

    def __init__(self, api: Api, agents: list[Watched]) -> None:
        self.api = api
        self.agents = agents
        self.answers: list[tuple[float, str, int, int]] = []  # (sent at, agent, status code, version)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, WAIT)

    def _version_sent_after(self, moment: float, agent: Watched) -> int | None:
        for sent, agent_id, code, version in self.answers:
            if agent_id == agent.agent_id and sent >= moment and code == 200:
                return version
        return None

    async def version_sent_after(self, moment: float, agent: Watched) -> int:
        """The version of the agent's first heartbeat sent after `moment` (waiting for one)."""
        await wait_until(
            lambda: self._version_sent_after(moment, agent) is not None, timeout=WAIT, what="a heartbeat of the agent"
        )
        version = self._version_sent_after(moment, agent)
        assert version is not None
        return version

    async def _run(self) -> None:
        turn = 0
        while not self._stop.is_set():
            agent = self.agents[turn % len(self.agents)]
            turn += 1
            sent = time.monotonic()
            response = await self.api.callback({"job_id": agent.job_id, "type": "heartbeat"})
            version = response.json()["version"] if response.status_code == 200 else 0
            self.answers.append((sent, agent.agent_id, response.status_code, version))


async def final_round(api: Api, agents: list[Watched]) -> None:
    """One more heartbeat per agent after the disruption; every socket must end on it."""
    finals = {agent.agent_id: await api.heartbeat(agent.job_id) for agent in agents}
    for agent in agents:
        await agent.reaches(finals[agent.agent_id])
        assert agent.latest == finals[agent.agent_id]


async def subscribers_on(cluster: LocalCluster, port: int, channel: str) -> int:
    async with cluster.node(port) as node:
        _, count = await node.execute_command("PUBSUB", "SHARDNUMSUB", channel)
    return int(count)


async def test_callbacks_to_one_replica_reach_sockets_on_the_other_on_every_shard(
    settings: Settings, clean_db: AsyncEngine, redis_cluster: SharedCluster
) -> None:
    cluster = await redis_cluster.get()
    async with hub_pair(settings, cluster) as (first, second), AsyncExitStack() as stack:
        api = Api(await stack.enter_async_context(httpx.AsyncClient(base_url=first.base, timeout=10)))
        agents = await agents_on_every_shard(api, cluster, settings.channel_prefix, per_shard=2)
        await watch(second.base, agents, stack)
        # The sockets' channels are subscribed on the primary of their own slot, spread over all three.
        for agent in agents:
            channel = channel_name(settings.channel_prefix, agent.agent_id)
            assert await subscribers_on(cluster, agent.shard, channel) == 1
        assert len({agent.shard for agent in agents}) == 3
        for _ in range(3):
            await final_round(api, agents)


async def test_a_killed_primary_fails_over_and_every_socket_ends_on_the_final_version(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    async with LocalCluster() as cluster, hub_pair(settings, cluster) as (first, second), AsyncExitStack() as stack:
        api = Api(await stack.enter_async_context(httpx.AsyncClient(base_url=first.base, timeout=10)))
        victim = (await cluster.primaries())[0]
        agents = await agents_on_every_shard(api, cluster, settings.channel_prefix, on=victim, more_on=2)
        await watch(second.base, agents, stack)
        driver = Driver(api, agents)
        driver.start()
        await agents[0].reaches(agents[0].latest + 1)  # the stream flows before the kill

        killed_at = time.monotonic()
        await cluster.kill(victim)
        successor = await cluster.wait_for_failover(victim, timeout=WAIT)
        on_victim = [agent for agent in agents if agent.shard == victim]
        # Each socket of an agent on the killed shard gets a version sent after the kill.
        back_at = [await agent.reaches(await driver.version_sent_after(killed_at, agent)) for agent in on_victim]
        await driver.stop()

        # Callbacks never failed: Postgres took each one; a publish that met the dead primary waited
        # in the publisher's backlog.
        assert {code for _, _, code, _ in driver.answers} == {200}
        await final_round(api, agents)
        for agent in on_victim:
            channel = channel_name(settings.channel_prefix, agent.agent_id)
            assert await subscribers_on(cluster, successor, channel) == 1
        print(
            f"\nfailover: {len(driver.answers)} callbacks, all 200; kill to a post-kill version on the first "
            f"socket of the killed shard {min(back_at) - killed_at:.2f} s, on the last {max(back_at) - killed_at:.2f} s"
        )


async def test_a_slot_migrated_mid_stream_leaves_no_socket_behind(settings: Settings, clean_db: AsyncEngine) -> None:
    async with LocalCluster() as cluster, hub_pair(settings, cluster) as (first, second), AsyncExitStack() as stack:
        api = Api(await stack.enter_async_context(httpx.AsyncClient(base_url=first.base, timeout=10)))
        agents = await agents_on_every_shard(api, cluster, settings.channel_prefix)
        await watch(second.base, agents, stack)
        moving = agents[0]
        channel = channel_name(settings.channel_prefix, moving.agent_id)
        target = next(port for port in await cluster.primaries() if port != moving.shard)
        driver = Driver(api, agents)
        driver.start()
        await moving.reaches(moving.latest + 1)

        migrated_at = time.monotonic()
        await cluster.migrate_slot(key_slot(channel.encode()), to=target)
        await moving.reaches(await driver.version_sent_after(migrated_at, moving))
        await driver.stop()

        assert {code for _, _, code, _ in driver.answers} == {200}
        await final_round(api, agents)
        assert await subscribers_on(cluster, target, channel) == 1
        assert await subscribers_on(cluster, moving.shard, channel) == 0
