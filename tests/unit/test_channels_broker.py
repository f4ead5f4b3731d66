"""The broker's reaction to what only a real outage produces (Restored, a failing event stream),
driven through a scripted in-process backend so that each case is exact and instant."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from channels import Broker, Event, Message, Restored
from tests.support.inbox import Inbox, pair

WAIT = 5.0


class ScriptedBackend:
    """An in-process backend whose event stream a test feeds directly."""

    def __init__(self) -> None:
        self.subscribed: set[str] = set()
        self._events: asyncio.Queue[Event | Exception | None] = asyncio.Queue()

    def inject(self, item: Event | Exception) -> None:
        """Queue an event, or an exception that events() raises when it gets there."""
        self._events.put_nowait(item)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self._events.put_nowait(None)

    async def publish(self, channel: str, data: bytes) -> None:
        if channel in self.subscribed:
            self.inject(Message(channel, data))

    async def subscribe(self, channel: str) -> None:
        self.subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self.subscribed.discard(channel)

    async def events(self) -> AsyncIterator[Event]:
        while True:
            item = await self._events.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item


async def test_restored_resyncs_each_listened_channel_once_for_all_its_subscribers() -> None:
    calls: Counter[str] = Counter()
    decoded: list[bytes] = []

    async def resync(channel: str) -> bytes | None:
        calls[channel] += 1
        return None if channel == "gone" else f"fresh {channel}".encode()

    def decode(channel: str, data: bytes) -> tuple[str, bytes]:
        decoded.append(data)
        return channel, data

    backend = ScriptedBackend()
    async with Broker(backend, decode, resync) as broker, AsyncExitStack() as stack:
        a1, a2, b = Inbox(WAIT), Inbox(WAIT), Inbox(WAIT)
        await stack.enter_async_context(broker.subscribe("a", a1.put))
        await stack.enter_async_context(broker.subscribe("a", a2.put))
        await stack.enter_async_context(broker.subscribe("b", b.put))
        await stack.enter_async_context(broker.subscribe("gone", Inbox(WAIT).put))

        backend.inject(Restored(("a", "b", "gone", "nobody-listens")))
        assert await a1.next() == ("a", b"fresh a")
        assert await a2.next() == ("a", b"fresh a")
        assert await b.next() == ("b", b"fresh b")
        # Ordered after the resync deliveries on the same path: a barrier, not a sleep.
        await broker.publish("b", b"live")
        assert await b.next() == ("b", b"live")

    assert calls == {"a": 1, "b": 1, "gone": 1}
    assert sorted(decoded) == [b"fresh a", b"fresh b", b"live"]


async def test_resyncs_run_concurrently_within_the_limit() -> None:
    running = 0
    peak = 0
    release = asyncio.Event()
    all_started = asyncio.Event()
    started = 0
    channels = [f"c{i}" for i in range(20)]

    async def resync(channel: str) -> bytes:
        nonlocal running, peak, started
        running += 1
        started += 1
        peak = max(peak, running)
        if running == 4:
            all_started.set()
        await release.wait()
        running -= 1
        return b"x"

    backend = ScriptedBackend()
    async with Broker(backend, pair, resync, resync_limit=4) as broker, AsyncExitStack() as stack:
        inboxes = {channel: Inbox(WAIT) for channel in channels}
        for channel, inbox in inboxes.items():
            await stack.enter_async_context(broker.subscribe(channel, inbox.put))
        backend.inject(Restored(tuple(channels)))
        await asyncio.wait_for(all_started.wait(), WAIT)
        release.set()
        for channel, inbox in inboxes.items():
            assert await inbox.next() == (channel, b"x")
    assert peak == 4
    assert started == 20


async def test_a_failing_resync_is_logged_and_the_others_proceed(caplog: pytest.LogCaptureFixture) -> None:
    async def resync(channel: str) -> bytes:
        if channel == "bad":
            raise ConnectionError("database unavailable")
        return b"ok"

    backend = ScriptedBackend()
    async with Broker(backend, pair, resync, resync_limit=1) as broker, AsyncExitStack() as stack:
        good = Inbox(WAIT)
        await stack.enter_async_context(broker.subscribe("bad", Inbox(WAIT).put))
        await stack.enter_async_context(broker.subscribe("good", good.put))
        with caplog.at_level(logging.ERROR, logger="channels.broker"):
            backend.inject(Restored(("bad", "good")))
            assert await good.next() == ("good", b"ok")
    assert any("Could not resync channel bad" in r.getMessage() for r in caplog.records)


async def test_the_listener_survives_a_failing_event_stream(caplog: pytest.LogCaptureFixture) -> None:
    backend = ScriptedBackend()
    async with Broker(backend, pair) as broker:
        inbox = Inbox(WAIT)
        async with broker.subscribe("a", inbox.put):
            with caplog.at_level(logging.ERROR, logger="channels.broker"):
                backend.inject(RuntimeError("transport bug"))
                await broker.publish("a", b"after the failure")
                assert await inbox.next() == ("a", b"after the failure")
    assert any("listener failed" in r.getMessage() for r in caplog.records)


async def test_leaving_the_broker_cancels_a_resync_in_flight() -> None:
    entered = asyncio.Event()

    async def resync(channel: str) -> bytes:
        entered.set()
        await asyncio.Event().wait()  # a database that never answers
        raise AssertionError("unreachable")

    backend = ScriptedBackend()
    baseline = asyncio.all_tasks()
    broker = Broker(backend, pair, resync)
    async with broker, broker.subscribe("a", Inbox(WAIT).put):
        backend.inject(Restored(("a",)))
        await asyncio.wait_for(entered.wait(), WAIT)
    assert asyncio.all_tasks() - baseline == set()
