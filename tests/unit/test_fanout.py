from __future__ import annotations

import asyncio

import pytest

from hub.fanout import Waker


async def test_a_wide_wake_up_is_spread_over_loop_iterations() -> None:
    waker = Waker(batch=3)
    events = [asyncio.Event() for _ in range(8)]
    for event in events:
        waker.wake(event)
    # The first batch is set at once; the rest waits for later iterations.
    assert [event.is_set() for event in events] == [True] * 3 + [False] * 5
    assert waker.deferred == 5
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert sum(event.is_set() for event in events) == 6
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in events)), timeout=5)
    assert waker.deferred == 0


async def test_the_budget_is_per_iteration() -> None:
    waker = Waker(batch=2)
    first = [asyncio.Event() for _ in range(2)]
    for event in first:
        waker.wake(event)
    await asyncio.sleep(0)  # the next iteration refills the budget
    later = asyncio.Event()
    waker.wake(later)
    assert later.is_set()


async def test_an_event_already_set_costs_nothing() -> None:
    waker = Waker(batch=1)
    event = asyncio.Event()
    event.set()
    waker.wake(event)
    other = asyncio.Event()
    waker.wake(other)
    assert other.is_set()


def test_the_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch"):
        Waker(batch=0)
