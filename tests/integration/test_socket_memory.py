"""Sockets cost bounded memory: oversized client frames are refused unread, and a closed socket leaves
nothing behind, measured on a real `status-hub serve` process.

Each closed socket leaves objects in reference cycles (uvicorn's protocol objects, tasks cancelled
with their tracebacks) that only a full collection frees, and the hub makes full collections rare
because they stall the loop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.exceptions import ConnectionClosed

from hub.settings import Settings
from tests.support.api import token_for
from tests.support.process import hub_environment, hub_process
from tests.support.rawws import open_until_ping
from tests.support.ws import close_code, open_socket

ROUNDS = 10
SOCKETS = 2_000


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"No VmRSS line for process {pid}.")


@pytest.mark.slow
async def test_rounds_of_sockets_opened_and_dropped_keep_the_rss_flat(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    env = hub_environment(settings, HUB_PING_INTERVAL="1")
    token = token_for("owner-1")
    async with hub_process(env) as replica:
        port = urlsplit(replica.base).port
        assert port is not None
        gate = asyncio.Semaphore(1_000)  # connects in flight; each then waits up to a second for its ping

        async def connect() -> asyncio.StreamWriter:
            async with gate:
                return await asyncio.wait_for(open_until_ping(port, "/api/ws", token), 30)

        rss: list[int] = []
        for _ in range(ROUNDS):
            sockets = await asyncio.gather(*(connect() for _ in range(SOCKETS)))
            for writer in sockets:
                writer.close()  # dropped, as a closed tab drops it
            await asyncio.gather(*(writer.wait_closed() for writer in sockets))
            del sockets
            rss.append(_rss_kib(replica.process.pid))
    first, last = rss[0], rss[-1]
    assert last <= first * 1.10, f"RSS per round (KiB): {rss}"


async def test_oversized_client_frames_are_refused_before_they_are_buffered(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    """20 concurrent 10 MiB frames once took a hub to 500 MB; each is now refused from its header."""
    async with hub_process(hub_environment(settings)) as replica:
        before = _rss_kib(replica.process.pid)

        async def send_huge() -> int | None:
            async with open_socket(replica.base, "/api/ws", max_size=None) as ws:
                try:
                    await ws.send("x" * (10 * 1024 * 1024))
                except ConnectionClosed as closed:  # refused while the frame was still being sent
                    return None if closed.rcvd is None else closed.rcvd.code
                return await close_code(ws)

        codes = await asyncio.gather(*(send_huge() for _ in range(20)))
        after = _rss_kib(replica.process.pid)
    assert codes == [1009] * 20
    assert after - before < 20 * 1024, f"RSS went from {before} to {after} KiB"
