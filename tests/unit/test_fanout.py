from __future__ import annotations

import asyncio

import pytest
from websockets.frames import Frame, Opcode

from hub.domain.frames import text_frame
from hub.runtime.waker import Waker


class Socket:
    def __init__(self) -> None:
        self.flushed = 0

    def flush(self) -> None:
        self.flushed += 1


async def test_a_wide_fan_out_is_spread_over_loop_iterations() -> None:
    waker = Waker(batch=3)
    sockets = [Socket() for _ in range(8)]
    for socket in sockets:
        waker.schedule(socket)
    # The first batch is flushed at once; the rest waits for later iterations.
    assert [socket.flushed for socket in sockets] == [1] * 3 + [0] * 5
    assert waker.deferred == 5
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert sum(socket.flushed for socket in sockets) == 6
    for _ in range(3):  # two more batches drain the rest
        await asyncio.sleep(0)
    assert waker.deferred == 0
    assert [socket.flushed for socket in sockets] == [1] * 8


async def test_the_budget_is_per_iteration() -> None:
    waker = Waker(batch=2)
    for socket in (Socket(), Socket()):
        waker.schedule(socket)
    await asyncio.sleep(0)  # the next iteration refills the budget
    later = Socket()
    waker.schedule(later)
    assert later.flushed == 1


def test_the_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch"):
        Waker(batch=0)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 200_000], ids=lambda size: f"{size}-bytes")
def test_text_frames_match_the_websocket_library(size: int) -> None:
    payload = b"x" * size
    assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)
