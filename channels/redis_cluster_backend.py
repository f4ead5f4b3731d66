"""Sharded pub/sub on a Redis Cluster: SPUBLISH to a channel's slot, SSUBSCRIBE where the slot lives.

One pub/sub connection per primary that holds a wanted channel (never more than the cluster has
nodes, whatever the number of channels), each read by its own task, and one repair loop. A channel's
subscription is lost when its node's connection fails (a crash, a failover, silence caught by PING),
when the node answers its SSUBSCRIBE with an error (MOVED: our slot map was stale), or when the node
sends an unsolicited `sunsubscribe` (the slot migrated away). The repair loop then waits a jittered
backoff, rereads the slot map, subscribes the channel where its slot lives now, and once that node
confirmed it yields `Restored`, so the broker resyncs it from Postgres: the single-node policy, per
channel instead of per server.

Why not redis-py's `ClusterPubSub` (read in 8.1.0): each of its per-node connections is a redis-py
`PubSub`, which reconnects and resubscribes silently (see redis_connection.py: messages of the gap are
lost and nobody is told); `get_sharded_message()` polls the nodes one after another with a timeout
instead of reading them all at once; and its slot-move reconciliation runs in background tasks that
report nothing, so nothing would resync. This backend reuses the single-node `PubSubConnection`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster

from channels.backend import Event, EventQueue, Message, Restored
from channels.redis_connection import CONNECTION_LOST, PubSubConnection, Timing

logger = logging.getLogger(__name__)

# What reading the slot map can fail with: no node answers, or the answers do not cover every slot.
_TOPOLOGY_FAILED = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError)


class _Link:
    """The pub/sub connection to one primary, and what was sent on it."""

    __slots__ = ("conn", "live", "name", "restored", "restoring", "sent")

    def __init__(self, name: str, conn: PubSubConnection) -> None:
        self.name = name
        self.conn = conn
        self.live = True
        # Commands waiting for their reply, in the order sent: a node answers in that order, one
        # reply per single-channel (S)SUBSCRIBE or SUNSUBSCRIBE, a confirmation or an error.
        self.sent: deque[tuple[bytes, str, asyncio.Future[None]]] = deque()
        # Channels moved here after a loss and not yet confirmed; confirmed ones not yet reported.
        self.restoring: set[str] = set()
        self.restored: list[str] = []


class RedisClusterBackend:
    """A `Backend` on Redis Cluster sharded pub/sub.

    `cluster` is a ready client (its seed nodes set); the backend reads the slot map through it and
    publishes with it, and never closes it. The timeouts, backoff and `max_pending` mean what they
    mean for `RedisBackend`. At most `max_publishing` publishes are in flight; the next waits its turn
    (the cluster client's pools refuse at once, rather than wait, when a node's connections are all
    taken).
    """

    def __init__(
        self,
        cluster: RedisCluster,
        *,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        idle_timeout: float = 15.0,
        ping_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        max_pending: int = 10_000,
        max_publishing: int = 32,
    ) -> None:
        self._timing = Timing(backoff_initial, backoff_max, idle_timeout, ping_timeout, connect_timeout)
        for name, value in [("max_pending", max_pending), ("max_publishing", max_publishing)]:
            if not value > 0:
                raise ValueError(f"{name} must be greater than zero, got {value!r}.")
        self._cluster = cluster
        self._queue = EventQueue(max_pending)
        # Channels the consumer wants; each is either placed on a link or an orphan.
        self._wanted: set[str] = set()
        self._placed: dict[str, _Link] = {}
        # Wanted channels on no node right now: the repair loop places them, then reports them Restored.
        self._orphans: set[str] = set()
        self._links: dict[str, _Link] = {}
        # Changes of _placed, _orphans and the links' `sent` queues, with the sends that go with them.
        self._lock = asyncio.Lock()
        self._opening: dict[str, asyncio.Task[_Link]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._repair_wanted = asyncio.Event()
        self._refresh = False  # the slot map must be read again before the next placement
        # Counts the troubles: one that comes while the map is being read asks for another reading.
        self._troubles = 0
        self._publishing = asyncio.Semaphore(max_publishing)
        self._repairer: asyncio.Task[NoReturn] | None = None
        self._started = False
        self._stopped = False

    @property
    def connected(self) -> bool:
        """Whether every wanted channel is subscribed on the node that holds its slot (or on its way)."""
        return self._started and not self._stopped and not self._refresh and not self._orphans

    @property
    def connections(self) -> int:
        """Open pub/sub connections: at most one per node of the cluster."""
        return sum(link.live for link in self._links.values())

    async def start(self) -> None:
        """Read the slot map and connect to every primary now if the cluster answers, else keep trying
        in the background (a process starts during an outage; its subscribes are recorded and restored
        once the cluster is back). Connecting to each primary up front, as the single-node backend
        connects at start, keeps the first subscribe of each shard as quick as any other."""
        if self._started:
            raise RuntimeError("The Redis Cluster backend was already started; a backend is started once.")
        self._started = True
        try:
            await self._cluster.initialize()
            for node in self._cluster.get_primaries():
                try:
                    await self._link_to(node)
                except CONNECTION_LOST as exc:
                    logger.warning("Redis Cluster node %s is unreachable at start-up (%s).", node.name, exc)
        except (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError):
            raise  # a wrong password or ACL is no outage: retrying would never help
        except _TOPOLOGY_FAILED as exc:
            logger.warning(
                "The Redis Cluster is unreachable at start-up (%s: %s); connecting in the background.",
                type(exc).__name__,
                exc,
            )
            self._trouble()
        self._repairer = asyncio.create_task(self._repair_forever(), name="channels-cluster-repair")

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        tasks: list[asyncio.Task[Any]] = [*self._tasks, *self._opening.values()]
        if self._repairer is not None:
            tasks.append(self._repairer)
            self._repairer = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        links = list(self._links.values())
        for link in links:
            self._lose(link)
        for link in links:
            await link.conn.close()
        self._wanted.clear()
        self._orphans.clear()
        self._queue.close()

    async def publish(self, channel: str, data: bytes) -> None:
        """SPUBLISH through the cluster client, which routes it to the slot's primary and follows
        MOVED; raises a redis error when it cannot (a failover in progress: the caller retries)."""
        async with self._publishing:
            await self._cluster.spublish(channel, data)

    async def subscribe(self, channel: str) -> None:
        if not self._started or self._stopped:
            raise RuntimeError("Cannot subscribe: the Redis Cluster backend is not running (call start() first).")
        node = self._owner(channel)
        link: _Link | None = None
        if node is not None:
            try:
                link = await self._link_to(node)
            except CONNECTION_LOST as exc:
                logger.debug("Subscribing %s: node %s is unreachable (%r).", channel, node.name, exc)
        async with self._lock:
            self._wanted.add(channel)
            if link is None or not link.live or self._links.get(link.name) is not link:
                # The node is down or just changed. As with one Redis during an outage: the channel
                # is recorded, the repair loop subscribes it and yields Restored, the broker resyncs.
                self._unplace(channel)
                self._orphans.add(channel)
                self._trouble()
                return
            if channel in self._orphans:
                # It was lost and waits for the repair loop: still report it restored once confirmed.
                self._orphans.discard(channel)
                link.restoring.add(channel)
            elif self._placed.get(channel) not in (None, link):
                self._unplace(channel)
            self._placed[channel] = link
            confirmed = await self._send(link, b"ssubscribe", channel)
        # Outside the lock, so that subscribes pipeline; a lost connection resolves it (see _lose).
        if confirmed is not None:
            await confirmed

    async def unsubscribe(self, channel: str) -> None:
        """Return once the node confirmed (or at once when the channel is on no live node)."""
        async with self._lock:
            self._wanted.discard(channel)
            self._orphans.discard(channel)
            link = self._unplace(channel)
            if link is None or not link.live:
                return
            confirmed = await self._send(link, b"sunsubscribe", channel)
        if confirmed is not None:
            await confirmed
        await self._report_restored(link)  # the channel may have been the last one awaited

    def events(self) -> AsyncIterator[Event]:
        return self._queue.events()

    def _owner(self, channel: str) -> ClusterNode | None:
        """The primary holding the channel's slot in the client's slot map; None when it has none."""
        if self._refresh:
            return None  # the map is known to be stale: let the repair loop read it first
        try:
            return self._cluster.nodes_manager.get_node_from_slot(self._cluster.keyslot(channel))
        except (KeyError, redis.exceptions.SlotNotCoveredError):
            return None

    async def _link_to(self, node: ClusterNode) -> _Link:
        """The live link to `node`, opened if needed; concurrent callers share one opening."""
        link = self._links.get(node.name)
        if link is not None and link.live:
            return link
        opening = self._opening.get(node.name)
        if opening is None:
            opening = asyncio.create_task(self._open(node), name=f"channels-cluster-open:{node.name}")
            self._opening[node.name] = opening
            opening.add_done_callback(lambda done: self._opening.pop(node.name, None) if done is opening else None)
        # Shielded: one impatient subscriber must not cancel an opening others wait for.
        return await asyncio.shield(opening)

    async def _open(self, node: ClusterNode) -> _Link:
        # A connection of the node's own class and settings (auth, TLS, timeouts), outside its pool.
        raw = node.connection_class(**node.connection_kwargs)
        conn = await PubSubConnection.connect(raw, self._timing)
        if self._stopped:
            await conn.close()
            raise redis.exceptions.ConnectionError("The Redis Cluster backend was stopped.")
        link = _Link(node.name, conn)
        old = self._links.get(node.name)
        if old is not None:
            self._lose(old)
        self._links[node.name] = link
        reader = asyncio.create_task(self._read(link), name=f"channels-cluster-reader:{node.name}")
        self._tasks.add(reader)
        reader.add_done_callback(self._tasks.discard)
        return link

    async def _send(self, link: _Link, kind: bytes, channel: str) -> asyncio.Future[None] | None:
        """Send a single-channel command under _lock; the future of its reply, or None when the
        connection was lost on the way (its reader sees the loss and the repair loop takes over)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        link.sent.append((kind, channel, waiter))
        try:
            # Shielded: redis-py closes the connection when a send is cancelled half-way.
            await asyncio.shield(link.conn.send(kind.decode().upper(), channel))
        except CONNECTION_LOST as exc:
            logger.debug("%s %s met a lost connection (%r); the repair loop takes it from here.", kind, channel, exc)
            return None
        return waiter

    async def _read(self, link: _Link) -> None:
        """Read one node's replies until its connection is lost (or the task is cancelled by stop())."""
        try:
            while True:
                try:
                    reply = await link.conn.read()
                except redis.exceptions.ResponseError as exc:
                    await self._refused(link, exc)
                    continue
                if reply.kind == b"smessage":
                    # Dropped unless the channel is (still) placed here: in flight after a SUNSUBSCRIBE,
                    # or on the old node of a slot that moved.
                    if self._placed.get(reply.channel) is link:
                        await self._queue.put(Message(reply.channel, reply.data))
                elif reply.kind in (b"ssubscribe", b"sunsubscribe"):
                    await self._answered(link, reply.kind, reply.channel)
                else:
                    logger.warning("Ignoring an unexpected reply from Redis Cluster node %s: %r.", link.name, reply)
        except CONNECTION_LOST as exc:
            reason: BaseException = exc
        except Exception as exc:
            logger.exception("The reader of Redis Cluster node %s failed unexpectedly.", link.name)
            reason = exc
        # CancelledError is not caught: it comes from stop(), which closes the links itself.
        lost = self._lose(link)
        await link.conn.close()
        logger.warning(
            "Lost the Redis Cluster pub/sub connection to %s (%s: %s); resubscribing its %d channel(s) where "
            "their slots live now.",
            link.name,
            type(reason).__name__,
            reason,
            lost,
        )

    async def _answered(self, link: _Link, kind: bytes, channel: str) -> None:
        if link.sent and link.sent[0][:2] == (kind, channel):
            _, _, waiter = link.sent.popleft()
            _resolve(waiter)
            if kind == b"ssubscribe" and channel in link.restoring:
                link.restoring.discard(channel)
                link.restored.append(channel)
                await self._report_restored(link)
            return
        if kind == b"sunsubscribe" and self._placed.get(channel) is link:
            # Nobody asked: the node gave the channel's slot to another (a migration).
            logger.info(
                "Redis Cluster node %s dropped channel %s (its slot moved); resubscribing it.", link.name, channel
            )
            self._unplace(channel)
            self._orphans.add(channel)
            self._trouble()
            await self._report_restored(link)

    async def _refused(self, link: _Link, error: redis.exceptions.ResponseError) -> None:
        """The oldest command still waiting on `link` was answered with an error."""
        if not link.sent:
            logger.warning("Ignoring an unexpected error from Redis Cluster node %s: %s.", link.name, error)
            return
        kind, channel, waiter = link.sent.popleft()
        _resolve(waiter)  # the caller returns; the channel is restored (and so resynced) below
        if kind != b"ssubscribe" or self._placed.get(channel) is not link:
            return
        logger.info("Redis Cluster node %s refused SSUBSCRIBE %s (%s); resubscribing it.", link.name, channel, error)
        if isinstance(error, redis.exceptions.MovedError):
            # The node says where the slot is: the same update the client makes on a MOVED reply.
            await self._cluster.nodes_manager.move_slot(error)
            self._unplace(channel)
            self._orphans.add(channel)
            self._repair_wanted.set()
        else:
            self._unplace(channel)
            self._orphans.add(channel)
            self._trouble()
        await self._report_restored(link)

    async def _report_restored(self, link: _Link) -> None:
        """Yield Restored for the channels confirmed on `link` once none is still awaited there."""
        if link.restoring or not link.restored:
            return
        channels = tuple(link.restored)
        link.restored.clear()
        await self._queue.put(Restored(channels))

    def _unplace(self, channel: str) -> _Link | None:
        link = self._placed.pop(channel, None)
        if link is not None:
            link.restoring.discard(channel)
            if channel in link.restored:
                link.restored.remove(channel)
        return link

    def _lose(self, link: _Link) -> int:
        """Forget a link whose connection is gone; its channels become orphans. Synchronous on purpose:
        no subscribe can slip in between. Returns how many channels it held."""
        link.live = False
        if self._links.get(link.name) is link:
            del self._links[link.name]
        held = [channel for channel, where in self._placed.items() if where is link]
        for channel in held:
            del self._placed[channel]
        self._orphans.update(channel for channel in held if channel in self._wanted)
        for _, _, waiter in link.sent:
            _resolve(waiter)
        link.sent.clear()
        link.restoring.clear()
        link.restored.clear()
        if not self._stopped:
            self._trouble()
        return len(held)

    def _trouble(self) -> None:
        """Something was lost: reread the slot map and place the orphans, after a backoff."""
        self._refresh = True
        self._troubles += 1
        self._repair_wanted.set()

    async def _repair_forever(self) -> NoReturn:
        loop = asyncio.get_running_loop()
        failures = 0
        clean_since: float | None = None
        while True:
            await self._repair_wanted.wait()
            # Only trouble after a quiet spell starts from the shortest backoff again: trouble soon
            # after a repair waits longer each time, so a flapping node cannot cause a resync storm.
            if clean_since is not None and loop.time() - clean_since >= self._timing.backoff_max:
                failures = 0
            await asyncio.sleep(self._timing.backoff(failures))
            failures += 1
            self._repair_wanted.clear()
            try:
                await self._repair()
            except _TOPOLOGY_FAILED as exc:
                logger.warning(
                    "Could not read the Redis Cluster's slot map (%s: %s); retrying.", type(exc).__name__, exc
                )
                self._trouble()
            except Exception:
                logger.exception("Resubscribing to the Redis Cluster failed unexpectedly; retrying.")
                self._trouble()
            clean_since = None if self._repair_wanted.is_set() else loop.time()

    async def _repair(self) -> None:
        """Reread the slot map if needed, then subscribe every orphan on the node holding its slot."""
        if self._refresh:
            asked = self._troubles
            await self._cluster.nodes_manager.initialize()
            # Trouble while the map was read may not be in it: then it is read again, after a backoff.
            self._refresh = self._troubles != asked
        nodes = {node.name: node for node in map(self._owner, sorted(self._orphans)) if node is not None}
        for node in nodes.values():
            try:
                await self._link_to(node)
            except CONNECTION_LOST as exc:
                # The node is gone and the map does not say so yet (a failover in progress).
                logger.warning("Redis Cluster node %s is unreachable (%s: %s).", node.name, type(exc).__name__, exc)
        async with self._lock:
            for channel in sorted(self._orphans):
                owner = self._owner(channel)
                link = self._links.get(owner.name) if owner is not None else None
                if link is None or not link.live:
                    continue
                self._orphans.discard(channel)
                self._placed[channel] = link
                link.restoring.add(channel)
                await self._send(link, b"ssubscribe", channel)
            if self._orphans:
                self._trouble()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # a caller cancelled while waiting leaves a cancelled future
        waiter.set_result(None)
