"""The running hub's resources (engine, sessions, broker, open sockets), opened and closed in one place,
and the publish after commit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from litestar.di import NamedDependency
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import Pool
from standardwebhooks import Webhook

from channels import (
    Backend,
    Broker,
    MemoryBackend,
    RedisBackend,
    RedisClusterBackend,
    agent_of,
    canary_channel,
    channel_name,
)
from hub.domain.agent_ids import parse_agent_id
from hub.domain.frames import StatusFrame, tracked_frame
from hub.domain.signatures import standard_webhook
from hub.domain.tokens import VerifiedTokens
from hub.domain.wire import encode_status
from hub.runtime.canary import Canary
from hub.runtime.collector import ChurnCollector
from hub.runtime.metrics import Metrics
from hub.runtime.oidc_verifier import OidcVerifier, open_verifier
from hub.runtime.pool import warm_pool
from hub.runtime.publisher import Publisher
from hub.runtime.versions import VersionCache
from hub.runtime.waker import Waker
from hub.settings import Settings, cluster_node_address
from persistence import make_engine, make_session_factory, queries, status_reads

log = logging.getLogger(__name__)

# Redis connections for publishing, per process (the subscriber has its own): concurrent publishes
# come from concurrent callbacks, which the database pool already bounds.
REDIS_CONNECTIONS = 32
REDIS_TIMEOUT = 2.0
# Seconds a REST read waits for a connection of its pool before the answer is 503 "busy".
READ_POOL_TIMEOUT = 1.0
# Seconds a shutdown gives the statuses still waiting for Redis.
PUBLISH_FLUSH_GRACE = 2.0


class Watcher(Protocol):
    """Something that holds a version of agents and takes newer ones: a socket, or the poll cache."""

    def held_versions(self) -> dict[str, int]: ...

    def offer(self, frame: StatusFrame) -> None: ...


class LiveConnection(Watcher, Protocol):
    """What the hub needs of an open dashboard socket (hub.live.live_socket.LiveSocket)."""

    close_connection: Callable[[int, str], Coroutine[Any, Any, None]]

    @property
    def pending_count(self) -> int: ...

    def check(self, now: float) -> None: ...


@dataclass(slots=True)
class Hub:
    settings: Settings
    # Callbacks, socket subscribes and the timers: never waiting behind REST pollers.
    engine: AsyncEngine
    # REST reads, on their own pool and in autocommit (one round trip a read, no BEGIN or ROLLBACK).
    reads: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    broker: Broker[StatusFrame]
    backend: Backend
    publisher: Publisher
    metrics: Metrics
    tokens: VerifiedTokens
    # Agents polled lately, kept current by their channels: a current poll reads no database.
    versions: VersionCache
    # Proves the broker round trip for /readyz.
    canary: Canary
    # This process, among the replicas (names its canary channel).
    replica: str
    # The callback credentials this hub accepts: Standard Webhooks (and X-Hub-Signature-256) with a
    # webhook secret, GitHub Actions OIDC tokens with an audience; None when not configured.
    standard_webhook: Webhook | None = None
    oidc: OidcVerifier | None = None
    # Open dashboard sockets of this process (closed with 1012 on shutdown).
    sockets: set[LiveConnection] = field(default_factory=set)
    waker: Waker = field(default_factory=Waker)
    collector: ChurnCollector = field(default_factory=ChurnCollector)
    # Set by a drain (SIGTERM): not ready from the start, then new sockets are refused (closing).
    draining: bool = False
    closing: bool = False

    def channel(self, agent_id: str) -> str:
        return channel_name(self.settings.channel_prefix, agent_id)

    async def publish_status(self, data: bytes, agent_id: str) -> None:
        """Ring the doorbell after commit; never raises (see Publisher). While Redis is down the
        subscriptions drop too, and their restoration resyncs every replica from Postgres."""
        await self.publisher.publish(agent_id, data)

    async def snapshot(self, agent_id: str) -> bytes | None:
        return await read_snapshot(self.sessions, agent_id)

    @property
    def agent_channels(self) -> frozenset[str]:
        """The agents' channels this process listens to (the broker's, without the canary's)."""
        return self.broker.channels - {self.canary.channel}

    def refresh_metrics(self) -> None:
        connected = getattr(self.backend, "connected", True)
        engines = {self.engine.sync_engine, self.reads.sync_engine}
        self.metrics.refresh(
            sockets=len(self.sockets),
            subscriptions=len(self.agent_channels),
            backlog=self.publisher.backlog,
            redis_connected=bool(connected),
            checked_out=sum(_checked_out(engine.pool) for engine in engines),
        )


def _checked_out(pool: Pool) -> int:
    count = getattr(pool, "checkedout", None)  # a queue pool's; SQLite's single connection has none
    return int(count()) if callable(count) else 0


async def read_snapshot(sessions: async_sessionmaker[AsyncSession], agent_id: str) -> bytes | None:
    """The agent's current status from Postgres, encoded; None when it has no instance."""
    key = parse_agent_id(agent_id)
    if key is None:
        return None
    async with sessions() as session:
        instance = await queries.latest_instance(session, key)
        return None if instance is None else encode_status(instance)


# How handlers ask for the hub (Litestar injects it by name).
HubDep = NamedDependency[Hub]


def read_pool_size(settings: Settings) -> int:
    """Connections of the REST reads' pool: half the main one (at least 2), with no overflow."""
    return max(2, settings.db_pool_size // 2)


def _reads_engine(settings: Settings, engine: AsyncEngine) -> AsyncEngine:
    """REST reads get a pool of their own on Postgres, so pollers can never starve callbacks; its
    connections are in autocommit from when they open (set per checkout instead, the isolation level
    was set and reset around every read: a sixth of a changed poll's instructions). On the embedded
    SQLite default (one process, one connection) they share the one engine."""
    if engine.dialect.name != "postgresql":
        return engine
    return make_engine(
        settings.database_url,
        pool_size=read_pool_size(settings),
        max_overflow=0,
        pool_timeout=READ_POOL_TIMEOUT,
        isolation_level="AUTOCOMMIT",
    )


def _cluster_client(settings: Settings) -> RedisCluster:
    """The Redis Cluster client of HUB_REDIS_CLUSTER_NODES: REDIS_CONNECTIONS publishing connections per
    node, REDIS_TIMEOUT on every socket operation, and one quick retry (a MOVED or a failover takes the
    client's own topology refresh; a publish that still fails waits in the publisher's backlog). Its
    pools refuse a connection at once when all are taken, unlike the single node's blocking pool, so
    the backend lets at most REDIS_CONNECTIONS publishes out at a time."""
    return RedisCluster(
        startup_nodes=[ClusterNode(*cluster_node_address(node)) for node in settings.redis_cluster_nodes],
        max_connections=REDIS_CONNECTIONS,
        socket_connect_timeout=REDIS_TIMEOUT,
        socket_timeout=REDIS_TIMEOUT,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
    )


@asynccontextmanager
async def open_hub(settings: Settings) -> AsyncIterator[Hub]:
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
    reads = _reads_engine(settings, engine)
    read_engine = reads if reads is not engine else engine.execution_options(isolation_level="AUTOCOMMIT")
    redis: Redis | RedisCluster | None = None
    backend: Backend
    if settings.redis_cluster_nodes:
        redis = _cluster_client(settings)
        backend = RedisClusterBackend(redis, max_publishing=REDIS_CONNECTIONS)
    elif settings.redis_url is None:
        backend = MemoryBackend()
    else:
        # Bounded timeouts: a hung Redis must not hold publishes (each runs after its callback's answer,
        # and a failed one waits in the publisher's backlog) nor the subscriber's reconnects. A sized,
        # blocking pool: past REDIS_CONNECTIONS concurrent publishes the next one waits for a
        # connection (at most the socket timeout) instead of failing at once.
        pool = BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=REDIS_CONNECTIONS,
            timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            socket_timeout=REDIS_TIMEOUT,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
        )
        redis = Redis(connection_pool=pool)
        backend = RedisBackend(redis)
    sessions = make_session_factory(engine)
    await warm_pool(engine, settings.db_pool_size)
    if reads is not engine:
        await warm_pool(reads, read_pool_size(settings))
    metrics = Metrics()
    channel_prefix = settings.channel_prefix

    async def resync(channel: str) -> bytes | None:
        try:
            agent_id = agent_of(settings.channel_prefix, channel)
        except ValueError:
            return None  # not an agent's channel: the readiness canary's
        metrics.resyncs_total.inc()
        return await read_snapshot(sessions, agent_id)

    def observe_lag(seconds: float) -> None:
        metrics.delivery_lag.observe(max(0.0, seconds))

    def decode(_channel: str, data: bytes) -> StatusFrame:
        return tracked_frame(data, observe_lag)

    def dispatched(frame: StatusFrame) -> None:
        if frame.delivery is not None:
            frame.delivery.release(False)  # the fan-out's own hold: every local socket was offered it

    try:
        async with Broker(backend, decode, resync, dispatched=dispatched) as broker:

            async def publish(agent_id: str, data: bytes) -> None:
                await broker.publish(channel_name(channel_prefix, agent_id), data)

            publisher = Publisher(publish, metrics)

            def subscribe(agent_id: str, deliver: Callable[[StatusFrame], None]) -> AbstractAsyncContextManager[None]:
                return broker.subscribe(channel_name(channel_prefix, agent_id), deliver)

            async def read_current(agent_id: uuid.UUID) -> tuple[str, uuid.UUID, int] | None:
                async with read_engine.connect() as connection:
                    found = await status_reads.agent_status(connection, agent_id)
                if found is None or found[1] is None:
                    return None
                return found[0], found[1].id, found[1].version

            versions = VersionCache(subscribe, read_current)
            replica = uuid.uuid4().hex
            hub = Hub(
                settings=settings,
                engine=engine,
                reads=read_engine,
                sessions=sessions,
                broker=broker,
                backend=backend,
                publisher=publisher,
                metrics=metrics,
                tokens=VerifiedTokens(settings.jwt_secret),
                versions=versions,
                canary=Canary(broker, canary_channel(channel_prefix, replica)),
                replica=replica,
                standard_webhook=standard_webhook(settings.webhook_secret) if settings.signatures_enabled else None,
                oidc=open_verifier(settings),
            )
            try:
                yield hub
            finally:
                if hub.oidc is not None:
                    await hub.oidc.close()
                await versions.close()
                hub.waker.close()
                await publisher.close(PUBLISH_FLUSH_GRACE)
    finally:
        if isinstance(redis, Redis):
            await redis.aclose()
            await redis.connection_pool.disconnect()
        elif redis is not None:
            await redis.aclose()  # a cluster client closes every node's connections
        await engine.dispose()
        if reads is not engine:
            await reads.dispose()
