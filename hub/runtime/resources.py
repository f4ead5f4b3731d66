"""The running hub's resources (engine, sessions, broker, open sockets), opened and closed in one place,
and the publish after commit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from litestar.di import NamedDependency
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from channels import Backend, Broker, MemoryBackend, RedisBackend, agent_of, channel_name
from hub.domain.agent_ids import parse_agent_id
from hub.domain.frames import StatusFrame, status_frame
from hub.domain.wire import encode_status
from hub.runtime.pool import warm_pool
from hub.runtime.waker import Waker
from hub.settings import Settings
from persistence import make_engine, make_session_factory, queries

log = logging.getLogger(__name__)

# Seconds between retries of a failed publish (about 15 s in all).
REPUBLISH_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)


class LiveConnection(Protocol):
    """What the hub needs of an open dashboard socket (hub.live.live_socket.LiveSocket)."""

    close_connection: Callable[[int, str], Awaitable[None]]

    @property
    def pending_count(self) -> int: ...

    def check(self, now: float) -> None: ...

    def held_versions(self) -> dict[str, int]: ...

    def offer(self, frame: StatusFrame) -> None: ...


@dataclass(slots=True)
class Metrics:
    publish_failures: int = 0
    slow_socket_closes: int = 0
    resyncs: int = 0
    reconcile_repairs: int = 0


@dataclass(slots=True)
class Hub:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    broker: Broker[StatusFrame]
    backend: Backend
    metrics: Metrics = field(default_factory=Metrics)
    # Open dashboard sockets of this process (closed with 1012 on shutdown).
    sockets: set[LiveConnection] = field(default_factory=set)
    waker: Waker = field(default_factory=Waker)
    # Publishes being retried after a failure (cancelled on shutdown).
    republishing: set[asyncio.Task[None]] = field(default_factory=set)

    def channel(self, agent_id: str) -> str:
        return channel_name(self.settings.channel_prefix, agent_id)

    async def publish_status(self, data: bytes, agent_id: str) -> None:
        """Ring the doorbell after commit. Postgres is the truth: a failure is logged, counted and
        retried in the background, never raised. While Redis is down the subscriptions drop too,
        and their restoration resyncs every replica from Postgres."""
        try:
            await self.broker.publish(self.channel(agent_id), data)
        except Exception as exc:
            self.metrics.publish_failures += 1
            log.warning("Publishing the status of agent %s failed (%s); retrying in the background.", agent_id, exc)
            task = asyncio.create_task(self._republish(data, agent_id), name=f"republish-{agent_id}")
            self.republishing.add(task)
            task.add_done_callback(self.republishing.discard)

    async def _republish(self, data: bytes, agent_id: str) -> None:
        for delay in REPUBLISH_DELAYS:
            await asyncio.sleep(delay)
            try:
                await self.broker.publish(self.channel(agent_id), data)
            except Exception as exc:
                log.debug("A retried publish of agent %s failed: %r", agent_id, exc)
                continue
            log.info("Published the status of agent %s after a retry.", agent_id)
            return
        log.warning("Gave up publishing a status of agent %s; clients catch up on the next one or a resync.", agent_id)

    async def snapshot(self, agent_id: str) -> bytes | None:
        return await read_snapshot(self.sessions, agent_id)


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


@asynccontextmanager
async def open_hub(settings: Settings) -> AsyncIterator[Hub]:
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
    redis: Redis | None = None
    backend: Backend
    if settings.redis_url is None:
        backend = MemoryBackend()
    else:
        # Bounded timeouts: a hung Redis must not hold publishes (each runs after its callback's answer,
        # and a failed one is retried in the background) nor the subscriber's reconnects.
        redis = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=2.0,
            socket_timeout=2.0,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
        )
        backend = RedisBackend(redis)
    sessions = make_session_factory(engine)
    await warm_pool(engine, settings.db_pool_size)
    metrics = Metrics()

    async def resync(channel: str) -> bytes | None:
        metrics.resyncs += 1
        return await read_snapshot(sessions, agent_of(settings.channel_prefix, channel))

    try:
        async with Broker(backend, status_frame, resync) as broker:
            hub = Hub(
                settings=settings, engine=engine, sessions=sessions, broker=broker, backend=backend, metrics=metrics
            )
            try:
                yield hub
            finally:
                hub.waker.close()
                for task in list(hub.republishing):
                    task.cancel()
    finally:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()
