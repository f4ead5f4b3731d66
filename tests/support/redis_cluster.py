"""A private, disposable Redis Cluster for tests: 3 primaries and 3 replicas on free loopback ports.

Never touches the shared Redis at 127.0.0.1:6379. Use it as::

    async with LocalCluster() as cluster:
        settings = ... HUB_REDIS_CLUSTER_NODES=cluster.seeds ...
        port = cluster.primary_of(channel)
        await cluster.kill(port)                     # SIGKILL, like a crash
        new = await cluster.wait_for_failover(port)  # a replica of it now owns its slots
        await cluster.migrate_slot(slot, to=other)   # move a slot between primaries

Each node runs without persistence in a temporary directory (removed on exit), with a short
`cluster-node-timeout` so that a failover takes seconds, not the default 15 s; every node is killed
on exit, even if the test failed. The cluster is built by `redis-cli --cluster create`, as an
operator would build one.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis.asyncio
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from tests.support.redis_server import answers_ping, spawn_redis_server

__all__ = ["LocalCluster", "SharedCluster", "cluster_client"]

HOST = "127.0.0.1"
# Milliseconds without an answer before a node is flagged failing; the failover follows within about
# two more of them (the replica's election delay).
NODE_TIMEOUT_MS = 1000


class LocalCluster:
    """Six `redis-server --cluster-enabled yes` processes made into one cluster; an async context manager."""

    def __init__(self, *, primaries: int = 3, startup_timeout: float = 30.0) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError("Expected redis-server and redis-cli on PATH to run a private Redis Cluster.")
        self._server, self._cli = server, cli
        self._primaries = primaries
        self._startup_timeout = startup_timeout
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self.ports: list[int] = []
        self._killed_slots: dict[int, list[int]] = {}

    @property
    def seeds(self) -> str:
        """Every node as `host:port,host:port,...` (the value of HUB_REDIS_CLUSTER_NODES)."""
        return ",".join(f"{HOST}:{port}" for port in self.ports)

    @property
    def alive(self) -> list[int]:
        return [port for port, process in self._processes.items() if process.returncode is None]

    async def __aenter__(self) -> Self:
        try:
            await asyncio.wait_for(self._start(), self._startup_timeout)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="redis-cluster-test-")
        self.ports = _free_cluster_ports(self._primaries * 2)
        for port in self.ports:
            directory = Path(self._tmp.name) / str(port)
            directory.mkdir()
            self._processes[port] = await spawn_redis_server(
                self._server, HOST, port, directory,
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(directory / "nodes.conf"),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                # A primary waits 5 s by default before the first sync, for more replicas to join it.
                "--repl-diskless-sync-delay", "0",
            )  # fmt: skip
        for port in self.ports:
            while not await answers_ping(HOST, port):
                if self._processes[port].returncode is not None:
                    raise RuntimeError(f"A cluster node exited while starting on port {port} (is the port taken?).")
                await asyncio.sleep(0.02)  # a readiness probe: the server gives no other signal
        create = await asyncio.create_subprocess_exec(
            self._cli, "--cluster", "create", *(f"{HOST}:{port}" for port in self.ports),
            "--cluster-replicas", "1", "--cluster-yes",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await create.communicate()
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{output.decode(errors='replace')[-2000:]}")
        await self.wait_consistent()
        await self._wait_replicas_synced()

    async def _wait_replicas_synced(self) -> None:
        """Until every replica's link to its primary is up. A replica that never synced counts its data as
        infinitely old and refuses to take over, so a primary killed before then would never fail over."""
        for port in self.ports:
            async with self.node(port) as client:
                while (info := await client.info("replication"))["role"] == "slave":
                    if info.get("master_link_status") == "up":
                        break
                    await asyncio.sleep(0.05)  # replication gives no event to await

    async def wait_consistent(self, timeout: float = 20.0) -> None:
        """Until every live node says the cluster is ok and all agree on who owns every slot."""
        state: dict[str, object] = {}

        async def check() -> None:
            views = []
            for port in self.alive:
                async with self.node(port) as client:
                    info = await _command(client, "CLUSTER INFO")
                    if info.get("cluster_state") != "ok":
                        state["ok"] = False
                        return
                    views.append(await self._owners(client))
            state["ok"] = bool(views) and all(view == views[0] for view in views)

        async def poll() -> None:
            while True:
                await check()
                if state["ok"]:
                    return
                await asyncio.sleep(0.05)  # gossip gives no event to await

        try:
            await asyncio.wait_for(poll(), timeout)
        except TimeoutError:
            raise TimeoutError(f"The private Redis Cluster did not become consistent within {timeout} s.") from None

    def node(self, port: int) -> redis.asyncio.Redis:
        """A plain (non-cluster) client of one node; use it as an async context manager."""
        return redis.asyncio.Redis(host=HOST, port=port, socket_timeout=5, socket_connect_timeout=5)

    async def primaries(self) -> list[int]:
        async with self.node(self.alive[0]) as client:
            return sorted(set((await self._owners(client)).values()))

    async def primary_of_slot(self, slot: int) -> int:
        async with self.node(self.alive[0]) as client:
            return (await self._owners(client))[slot]

    async def primary_of(self, channel: str) -> int:
        return await self.primary_of_slot(key_slot(channel.encode()))

    async def kill(self, port: int) -> None:
        """SIGKILL one node, as a crash would, and wait until it is gone."""
        owners = await self._owners_seen_by(self.alive[0])
        self._killed_slots[port] = [slot for slot, owner in owners.items() if owner == port]
        process = self._processes[port]
        if process.returncode is None:
            process.kill()
            await asyncio.wait_for(process.wait(), 10)

    async def wait_for_failover(self, dead: int, timeout: float = 30.0) -> int:
        """Until a live node owns the slots of the killed primary `dead`, in every live node's view;
        the port of that node (its promoted replica)."""
        slots = self._killed_slots.get(dead)
        if not slots:
            raise ValueError(f"Node {dead} was not a primary killed by kill().")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (await self._owners_seen_by(self.alive[0])).get(slots[0]) == dead:
            if loop.time() > deadline:
                raise TimeoutError(f"No replica took over the slots of the killed primary {dead} within {timeout} s.")
            await asyncio.sleep(0.05)  # gossip gives no event to await
        await self.wait_consistent(max(1.0, deadline - loop.time()))
        return (await self._owners_seen_by(self.alive[0]))[slots[0]]

    async def _owners_seen_by(self, port: int) -> dict[int, int]:
        async with self.node(port) as client:
            return await self._owners(client)

    async def migrate_slot(self, slot: int, to: int) -> None:
        """Move `slot` from its primary to the primary `to` the way `redis-cli --cluster reshard` does:
        IMPORTING / MIGRATING, move its keys, then SETSLOT NODE on both and the others."""
        source = await self.primary_of_slot(slot)
        if source == to:
            raise ValueError(f"Slot {slot} is already on {to}.")
        async with self.node(source) as src, self.node(to) as dst:
            src_id, dst_id = await _myid(src), await _myid(dst)
            await _command(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            await _command(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            while keys := await _command(src, "CLUSTER", "GETKEYSINSLOT", slot, 100):
                await _command(src, "MIGRATE", HOST, to, "", 0, 5000, "KEYS", *keys)
            # The target first, so that no moment exists where neither side claims the slot.
            await _command(dst, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
            await _command(src, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        for port in await self.primaries():
            if port not in (source, to):
                async with self.node(port) as other:
                    await _command(other, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        await wait_until_owned(self, slot, to)

    async def close(self) -> None:
        """Kill every node and remove the directories. Idempotent."""
        for process in self._processes.values():
            if process.returncode is None:
                process.kill()
        for process in self._processes.values():
            await asyncio.wait_for(process.wait(), 10)
        self._processes.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @staticmethod
    async def _owners(client: redis.asyncio.Redis) -> dict[int, int]:
        """Slot -> port of its primary, as this node sees it (CLUSTER SHARDS is 7.0+; SLOTS is older and enough)."""
        owners: dict[int, int] = {}
        for start, end, primary, *_ in await _command(client, "CLUSTER SLOTS"):
            port = int(primary[1])
            for slot in range(int(start), int(end) + 1):
                owners[slot] = port
        return owners


def _free_cluster_ports(count: int) -> list[int]:
    """Ports free for a node and for its cluster bus (the port + 10000, so below 55536)."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20_000, 45_000)
        if port in ports or port + 10_000 in ports or port - 10_000 in ports:
            continue
        if _bindable(port) and _bindable(port + 10_000):
            ports.append(port)
    return ports


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
        return True


class SharedCluster:
    """One `LocalCluster` for the tests that leave it whole, started by the first test that asks for it."""

    def __init__(self) -> None:
        self._cluster: LocalCluster | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> LocalCluster:
        async with self._lock:
            if self._cluster is None:
                self._cluster = await LocalCluster().__aenter__()
            return self._cluster

    async def close(self) -> None:
        if self._cluster is not None:
            await self._cluster.close()
            self._cluster = None


@asynccontextmanager
async def cluster_client(seeds: str) -> AsyncIterator[RedisCluster]:
    """A cluster client on `seeds` (`host:port,...`), closed on exit."""
    nodes = [ClusterNode(host, int(port)) for host, _, port in (seed.rpartition(":") for seed in seeds.split(","))]
    client = RedisCluster(startup_nodes=nodes, socket_timeout=5, socket_connect_timeout=5)
    try:
        yield client
    finally:
        await client.aclose()


async def wait_until_owned(cluster: LocalCluster, slot: int, port: int, timeout: float = 20.0) -> None:
    """Until every live node says `slot` is on `port`."""
    seen: dict[int, bool] = {}

    async def refresh() -> None:
        for node in cluster.alive:
            async with cluster.node(node) as client:
                seen[node] = (await LocalCluster._owners(client)).get(slot) == port

    async def poll() -> None:
        while True:
            await refresh()
            if all(seen.values()):
                return
            await asyncio.sleep(0.05)  # gossip gives no event to await

    await asyncio.wait_for(poll(), timeout)


async def _myid(client: redis.asyncio.Redis) -> str:
    node_id = await _command(client, "CLUSTER MYID")
    return node_id.decode() if isinstance(node_id, bytes) else str(node_id)


async def _command(client: redis.asyncio.Redis, *args: Any) -> Any:
    """One command, answered as redis-py parses it (one place for its untyped `execute_command`)."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]
