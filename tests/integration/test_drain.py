"""A rolling restart: SIGTERM makes a replica not ready at once, it keeps serving for the drain delay,
then closes its sockets with 1012 spread evenly over the drain window and exits 0; its clients
reconnect to another replica and lose nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import resource
import signal
import time
from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.exceptions import ConnectionClosed

from hub.settings import Settings
from tests.support.api import Api
from tests.support.process import hub_environment, hub_process
from tests.support.waiting import wait_until
from tests.support.ws import open_socket

SOCKETS = 1_000
AGENTS = 50
DRAIN_DELAY = 2.0
DRAIN_SECONDS = 4.0
JITTER = 1.0  # seconds a client waits, at random, before reconnecting (as statushub.js does)
RECONNECT_ATTEMPTS = 4


@dataclass
class Dashboard:
    agent_id: str
    version: int = 0
    closed_at: float | None = None
    close_code: int | None = None
    reconnected: bool = False
    errors: list[str] = field(default_factory=list)


async def follow(dashboard: Dashboard, first: str, then: str, connected: asyncio.Event, stop: asyncio.Event) -> None:
    """Hold a socket on ``first`` until it is closed, then reconnect to ``then`` (with jitter) and
    keep the highest version seen, until ``stop``."""
    path = f"/api/agents/{dashboard.agent_id}/instance/ws"
    try:
        async with open_socket(first, path, ping_interval=None) as ws:
            connected.set()
            try:
                async for message in ws:
                    frame = json.loads(message)
                    if frame["type"] == "status":
                        dashboard.version = max(dashboard.version, frame["data"]["version"])
            except ConnectionClosed:
                pass
            dashboard.closed_at = time.monotonic()
            dashboard.close_code = ws.close_code
        if stop.is_set():
            return
        # As statushub.js does: reconnect after a jittered pause, and again (backing off) while the
        # other replica does not take the handshake in time, under a thousand arriving at once.
        for attempt in range(RECONNECT_ATTEMPTS):
            await asyncio.sleep(random.uniform(0, JITTER * 2**attempt))
            try:
                async with open_socket(then, f"{path}?version={dashboard.version}", ping_interval=None) as ws:
                    dashboard.reconnected = True
                    reader = asyncio.ensure_future(_read(ws, dashboard))
                    stopped = asyncio.ensure_future(stop.wait())
                    await asyncio.wait({reader, stopped}, return_when=asyncio.FIRST_COMPLETED)
                    reader.cancel()
                    stopped.cancel()
                    return
            except TimeoutError:
                if attempt == RECONNECT_ATTEMPTS - 1:
                    raise
    except Exception as exc:
        dashboard.errors.append(repr(exc))
        connected.set()


def _summary(dashboards: list[Dashboard]) -> str:
    closed = sum(d.closed_at is not None for d in dashboards)
    reconnected = sum(d.reconnected for d in dashboards)
    errors = sorted({e for d in dashboards for e in d.errors})
    return f"{closed} closed, {reconnected} reconnected, errors: {errors[:5]}"


async def _read(ws: object, dashboard: Dashboard) -> None:
    async for message in ws:  # type: ignore[attr-defined]
        frame = json.loads(message)
        if frame["type"] == "status":
            dashboard.version = max(dashboard.version, frame["data"]["version"])


async def test_sigterm_drains_evenly_and_clients_move_to_another_replica(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * SOCKETS:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8 * SOCKETS), hard))
    env = hub_environment(settings, HUB_DRAIN_DELAY=str(DRAIN_DELAY), HUB_DRAIN_SECONDS=str(DRAIN_SECONDS))
    async with (
        hub_process(env) as leaving,
        hub_process(env) as staying,
        httpx.AsyncClient(base_url=leaving.base, timeout=10) as client,
        httpx.AsyncClient(base_url=staying.base, timeout=10) as staying_client,
    ):
        api = Api(staying_client)
        jobs = [await api.new_job() for _ in range(AGENTS)]
        dashboards = [Dashboard(jobs[i % AGENTS][0]) for i in range(SOCKETS)]
        stop = asyncio.Event()
        opened = [asyncio.Event() for _ in dashboards]
        followers = [
            asyncio.create_task(follow(d, leaving.base, staying.base, e, stop))
            for d, e in zip(dashboards, opened, strict=True)
        ]
        try:
            async with asyncio.timeout(60):
                await asyncio.gather(*(e.wait() for e in opened))
            await wait_until(lambda: all(d.version >= 1 for d in dashboards), timeout=30, what="every snapshot")
            assert not [d.errors for d in dashboards if d.errors]

            leaving.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            exited: list[float] = []
            exit_waiter = asyncio.create_task(leaving.process.wait())
            exit_waiter.add_done_callback(lambda _: exited.append(time.monotonic()))

            async def not_ready() -> bool:
                response = await client.get("/readyz")
                return response.status_code == 503 and response.json()["draining"] is True

            async with asyncio.timeout(2):
                while not await not_ready():  # noqa: ASYNC110 - another process's answer: nothing to await
                    await asyncio.sleep(0.05)
            # Still serving while the load balancer notices: REST and callbacks on the leaving replica.
            leaving_api = Api(client)
            assert (await leaving_api.status(jobs[0][0])).status_code == 200
            assert await leaving_api.heartbeat(jobs[0][1]) > 0
            assert all(d.closed_at is None for d in dashboards)

            # Changes keep coming while the sockets move.
            while any(d.closed_at is None for d in dashboards) and time.monotonic() - signalled < 30:
                for _, job_id in random.sample(jobs, 5):
                    await api.heartbeat(job_id)
                await asyncio.sleep(0.2)  # the pace of the workflows' callbacks, not a synchronisation
            await wait_until(
                lambda: all(d.reconnected or d.errors for d in dashboards), timeout=30, what="every reconnect"
            )
            assert not [d.errors for d in dashboards if d.errors], _summary(dashboards)
            final = {agent_id: await api.heartbeat(job_id) for agent_id, job_id in jobs}
            await wait_until(
                lambda: all(d.version == final[d.agent_id] for d in dashboards), timeout=30, what="the final versions"
            )

            exit_code = await asyncio.wait_for(exit_waiter, DRAIN_DELAY + DRAIN_SECONDS + 5)
            exited_after = exited[0] - signalled
        finally:
            stop.set()
            # Bounded: a follower still holding a socket the leaving replica never closed is cancelled.
            _, pending = await asyncio.wait(followers, timeout=30)
            for follower in pending:
                follower.cancel()
            await asyncio.gather(*followers, return_exceptions=True)

    assert exit_code == 0, leaving.printed()
    assert exited_after <= DRAIN_DELAY + DRAIN_SECONDS + 5
    assert {d.close_code for d in dashboards} == {1012}
    assert not [d.errors for d in dashboards if d.errors]
    closes = sorted(d.closed_at for d in dashboards if d.closed_at is not None)
    # Nothing closed during the delay; then no second closes more than twice its even share.
    assert closes[0] - signalled >= DRAIN_DELAY - 0.5
    share = SOCKETS / DRAIN_SECONDS
    per_second: dict[int, int] = {}
    for closed in closes:
        second = int(closed - closes[0])
        per_second[second] = per_second.get(second, 0) + 1
    assert max(per_second.values()) <= 2 * share, per_second
    assert closes[-1] - closes[0] <= DRAIN_SECONDS + 1, per_second


async def test_a_second_sigterm_ends_the_drain_at_once(settings: Settings, clean_db: AsyncEngine) -> None:
    env = hub_environment(settings, HUB_DRAIN_DELAY="60", HUB_DRAIN_SECONDS="60")
    async with hub_process(env) as replica, httpx.AsyncClient(base_url=replica.base, timeout=10) as client:
        api = Api(client)
        agent_id, _ = await api.new_job()
        async with open_socket(replica.base, f"/api/agents/{agent_id}/instance/ws") as ws:
            replica.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(5):
                while (await client.get("/readyz")).status_code != 503:  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.05)
            replica.process.send_signal(signal.SIGTERM)
            # Well within the 120 s the drain would take: the server stops now, its sockets get 1012.
            exit_code = await asyncio.wait_for(replica.process.wait(), 15)
            with contextlib.suppress(ConnectionClosed):
                async with asyncio.timeout(5):
                    async for _ in ws:
                        pass
            assert ws.close_code == 1012
    assert exit_code == 0, replica.printed()
