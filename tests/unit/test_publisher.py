"""The publish backlog: newest per agent, bounded, drained in order by one loop once Redis is back."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from hub.runtime.metrics import Metrics
from hub.runtime.publisher import Publisher

WAIT = 5.0


def status(agent_id: str, version: int) -> bytes:
    """A published status, as far as the publisher reads it."""
    return msgspec.json.encode({"agentId": agent_id, "version": version})


class Redis:
    """Stands in for the broker's publish (the edge): fails while down, records what it took."""

    def __init__(self) -> None:
        self.up = False
        self.published: list[bytes] = []
        self.changed = asyncio.Event()

    async def publish(self, _agent_id: str, data: bytes) -> None:
        if not self.up:
            raise ConnectionError("Redis is down.")
        self.published.append(data)
        self.changed.set()

    async def until(self, count: int) -> None:
        async def reached() -> None:
            while len(self.published) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(reached(), WAIT)


def publisher(redis: Redis, metrics: Metrics, max_backlog: int = 100) -> Publisher:
    return Publisher(redis.publish, metrics, max_backlog=max_backlog, retry_first=0.01, retry_max=0.05)


async def test_failed_publishes_wait_newest_per_agent_and_go_out_in_order_once_redis_is_back() -> None:
    redis, metrics = Redis(), Metrics()
    pub = publisher(redis, metrics)
    for agent, version in [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("a", 3)]:
        await pub.publish(agent, status(agent, version))
    assert pub.backlog == 3
    assert metrics.publish_failures == 3  # one per agent: later ones join the backlog without trying
    redis.up = True
    await redis.until(3)
    assert redis.published == [status("a", 3), status("b", 1), status("c", 1)]
    assert pub.backlog == 0
    await pub.publish("a", status("a", 4))  # live again: straight through
    assert redis.published[-1] == status("a", 4)
    await pub.close(grace=1.0)


async def test_an_older_status_that_fails_last_does_not_replace_a_newer_one() -> None:
    redis, metrics = Redis(), Metrics()
    pub = publisher(redis, metrics)
    await pub.publish("a", status("a", 2))  # both were in flight; the newer failed first
    await pub.publish("a", status("a", 1))
    redis.up = True
    await redis.until(1)
    assert redis.published == [status("a", 2)]
    await pub.close(grace=1.0)


async def test_a_full_backlog_drops_its_oldest_agent() -> None:
    redis, metrics = Redis(), Metrics()
    pub = publisher(redis, metrics, max_backlog=2)
    for agent in ("a", "b", "c"):
        await pub.publish(agent, status(agent, 1))
    assert (pub.backlog, metrics.publish_dropped) == (2, 1)
    redis.up = True
    await redis.until(2)
    assert redis.published == [status("b", 1), status("c", 1)]
    await pub.close(grace=1.0)


async def test_closing_flushes_the_backlog_within_its_grace() -> None:
    redis, metrics = Redis(), Metrics()
    pub = Publisher(redis.publish, metrics, retry_first=60.0, retry_max=60.0)  # no retry before close
    await pub.publish("a", status("a", 1))
    redis.up = True
    await asyncio.wait_for(pub.close(grace=1.0), WAIT)
    assert redis.published == [status("a", 1)]
    assert pub.backlog == 0


async def test_closing_while_redis_is_down_gives_up_within_its_grace_and_keeps_nothing_after() -> None:
    redis, metrics = Redis(), Metrics()
    pub = publisher(redis, metrics)
    await pub.publish("a", status("a", 1))
    await asyncio.wait_for(pub.close(grace=0.1), WAIT)
    assert pub.backlog == 0 and redis.published == []
    await pub.publish("b", status("b", 1))  # a late failure after shutdown starts no retry
    assert pub.backlog == 0


@pytest.mark.parametrize("bad", [{"max_backlog": 0}, {"retry_first": 0.0}, {"retry_first": 2.0, "retry_max": 1.0}])
def test_bad_bounds_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Publisher(Redis().publish, Metrics(), **bad)  # type: ignore[arg-type]
