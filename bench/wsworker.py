"""One load-generator process: many picows websocket clients (or polling dashboards) and their records.

The orchestrator drives it over a pipe with small commands; every frame's receive time is taken
with ``time.time_ns()`` (CLOCK_REALTIME, shared by every process on the machine) so that it can be
joined with the send time the callback sender recorded in another process.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import msgspec
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.httpclient import HttpPool, HttpResponse

_STATUS_HEAD = b'{"type":"status"'


class _Data(msgspec.Struct):
    agentId: str
    version: int


class _Frame(msgspec.Struct):
    data: _Data


_frame = msgspec.json.Decoder(_Frame)
_status = msgspec.json.Decoder(_Data)


@dataclass(slots=True)
class Records:
    # (agent id, version, receive time ns) per received status.
    deliveries: list[tuple[str, int, int]] = field(default_factory=list)
    close_codes: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class Dashboard:
    """A polling dashboard: its agent, its connection, the last ETag and version it was answered."""

    key: int  # unique in the fleet: its staleness is measured per dashboard
    agent_id: str
    pool: HttpPool
    etag: str = ""
    version: int = 0

    def take(self, response: HttpResponse) -> int:
        """Keep a 200's ETag and version; return the version when it is newer than the last one, else 0."""
        self.etag = response.headers.get(b"etag", b"").decode()
        version = _status.decode(response.body).version
        if version <= self.version:
            return 0
        self.version = version
        return version


class Client(WSListener):
    def __init__(self, records: Records, agent_id: str) -> None:
        super().__init__()
        self.records = records
        self.agent_id = agent_id
        self.version = 0
        self.first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            payload = frame.get_payload_as_bytes()
            if not payload.startswith(_STATUS_HEAD):
                return  # application pings and error frames
            now = time.time_ns()
            data = _frame.decode(payload).data
            if data.version > self.version:
                self.version = data.version
            self.records.deliveries.append((self.agent_id, data.version, now))
            if not self.first.done():
                self.first.set_result(None)
        elif frame.msg_type == WSMsgType.CLOSE:
            # picows's stub declares WSCloseCode a plain Enum; at runtime it is a flexible IntEnum
            # that also holds codes it does not name (4401), and .value is that same int.
            code = frame.get_close_code().value
            self.records.close_codes[code] = self.records.close_codes.get(code, 0) + 1
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.first.done():
            self.first.set_exception(ConnectionError("Disconnected before the first status."))


class Worker:
    def __init__(self) -> None:
        self.records = Records()
        self.clients: list[Client] = []
        self.dashboards: list[Dashboard] = []
        self.poll_headers: dict[str, str] = {}

    async def open(self, base_url: str, token: str, agent_ids: list[str], concurrency: int) -> dict[str, Any]:
        limit = asyncio.Semaphore(concurrency)
        headers = {"Authorization": f"Bearer {token}"}
        errors: list[str] = []

        retries = 0

        async def one(agent_id: str) -> None:
            nonlocal retries
            url = f"{base_url}/api/agents/{agent_id}/instance/ws"
            for attempt in range(3):
                async with limit:
                    try:
                        _, client = await ws_connect(lambda: Client(self.records, agent_id), url, extra_headers=headers)
                        # ws_connect returns the listener our factory made, typed as its base class.
                        assert isinstance(client, Client)
                        await asyncio.wait_for(client.first, 60)
                        self.clients.append(client)
                        return
                    except Exception as exc:
                        # A dashboard reconnects too; every retry is counted and reported.
                        if attempt == 2:
                            errors.append(repr(exc))
                        else:
                            retries += 1

        await asyncio.gather(*(one(a) for a in agent_ids))
        failed = len(errors)
        return {"opened": len(agent_ids) - failed, "errors": errors[:5], "failed": failed, "retries": retries}

    async def wait_versions(self, expected: dict[str, int], timeout: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if all(c.version >= expected.get(c.agent_id, 0) for c in self.clients):
                break
            await asyncio.sleep(0.05)  # bounded by the deadline; frames arrive on their own
        behind = sum(1 for c in self.clients if c.version < expected.get(c.agent_id, 0))
        return {"behind": behind}

    def collect(self) -> dict[str, Any]:
        records, self.records = self.records, Records()
        for client in self.clients:
            client.records = self.records
        return {
            "deliveries": records.deliveries,
            "close_codes": records.close_codes,
            "finals": [(c.agent_id, c.version) for c in self.clients],
        }

    def close(self) -> dict[str, Any]:
        for client in self.clients:
            if client.transport is not None:
                client.transport.send_close()
                client.transport.disconnect()
        closed = len(self.clients)
        self.clients = []
        return {"closed": closed}

    async def open_pollers(
        self, host: str, port: int, token: str, dashboards: list[tuple[int, str]], concurrency: int, timeout: float
    ) -> dict[str, Any]:
        """One dashboard per (key, agent id), each on a keep-alive connection of its own, then primed."""
        self.close_pollers()
        self.poll_headers = {"Authorization": f"Bearer {token}"}
        self.dashboards = [Dashboard(key, agent_id, HttpPool(host, port, limit=1)) for key, agent_id in dashboards]
        return await self.prime_pollers(concurrency, timeout)

    async def prime_pollers(self, concurrency: int, timeout: float) -> dict[str, Any]:
        """One conditional GET per dashboard, outside any window: its connection is open and its ETag
        and version are current when the next window starts (a dashboard that had loaded its page)."""
        limit = asyncio.Semaphore(concurrency)
        errors: list[str] = []

        async def one(dashboard: Dashboard) -> None:
            async with limit:
                try:
                    response = await self._get(dashboard, conditional=True, timeout=timeout)
                except Exception as exc:
                    errors.append(repr(exc))
                    return
                if response.status == 200:
                    try:
                        dashboard.take(response)
                    except msgspec.DecodeError as exc:
                        errors.append(f"HTTP 200 without a status: {exc}")
                elif response.status != 304:
                    errors.append(f"HTTP {response.status}: {response.body[:200]!r}")

        await asyncio.gather(*(one(d) for d in self.dashboards))
        return {"primed": len(self.dashboards) - len(errors), "failed": len(errors), "errors": errors[:5]}

    async def _get(self, dashboard: Dashboard, *, conditional: bool, timeout: float) -> HttpResponse:
        headers = self.poll_headers
        if conditional and dashboard.etag:
            headers = {**headers, "If-None-Match": dashboard.etag}
        path = f"/api/agents/{dashboard.agent_id}/instance"
        return await asyncio.wait_for(dashboard.pool.request("GET", path, headers=headers), timeout)

    async def poll(self, interval: float, duration: float, conditional: bool, timeout: float) -> dict[str, Any]:
        """Every dashboard polls its agent every ``interval`` s for ``duration`` s, each from a random
        phase, with If-None-Match (its last ETag) when ``conditional``, else without (a full read).

        A dashboard waits for its answer before its next poll (one connection, as a browser tab), so
        a slow server is seen as latency and as polls that start late, never as dropped polls.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + duration
        statuses: dict[int, int] = {}
        errors: list[str] = []  # the first few, as samples
        latencies: list[int] = []
        seen: list[tuple[int, str, int, int]] = []
        requests = 0
        unanswered = 0

        async def dashboard_loop(dashboard: Dashboard) -> None:
            nonlocal requests, unanswered
            next_at = loop.time() + random.uniform(0, interval)
            while next_at < end:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                next_at += interval
                requests += 1
                start = time.monotonic_ns()
                try:
                    response = await self._get(dashboard, conditional=conditional, timeout=timeout)
                except Exception as exc:
                    # A transport error or no answer within ``timeout``: counted, never dropped.
                    unanswered += 1
                    if len(errors) < 5:
                        errors.append(repr(exc))
                    continue
                latencies.append(time.monotonic_ns() - start)
                received = time.time_ns()
                status = response.status
                if status == 200:
                    try:
                        version = dashboard.take(response)
                    except msgspec.DecodeError as exc:
                        if len(errors) < 5:
                            errors.append(f"HTTP 200 without a status: {exc}")
                        status = 0  # reported among the other answers
                    else:
                        if version:
                            seen.append((dashboard.key, dashboard.agent_id, version, received))
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(dashboard_loop(d) for d in self.dashboards))
        return {
            "requests": requests,
            "statuses": statuses,
            "transport_errors": unanswered,
            "errors": errors,
            "latencies_ns": latencies,
            "seen": seen,
        }

    def close_pollers(self) -> dict[str, Any]:
        for dashboard in self.dashboards:
            dashboard.pool.close()
        closed = len(self.dashboards)
        self.dashboards = []
        return {"closed": closed}


def main(conn: Connection, core: int) -> None:
    """Process entry point: pin, raise the open-files limit, serve commands until 'exit'."""
    os.sched_setaffinity(0, {core})
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_serve(conn))


async def _serve(conn: Connection) -> None:
    worker = Worker()
    loop = asyncio.get_running_loop()
    while True:
        command, args = await loop.run_in_executor(None, conn.recv)
        if command == "exit":
            worker.close()
            worker.close_pollers()
            conn.send({})
            return
        if command == "open":
            reply = await worker.open(**args)
        elif command == "wait_versions":
            reply = await worker.wait_versions(**args)
        elif command == "collect":
            reply = worker.collect()
        elif command == "close":
            reply = worker.close()
            await asyncio.sleep(0.2)  # let the close frames go out before the next command
        elif command == "open_pollers":
            reply = await worker.open_pollers(**args)
        elif command == "prime_pollers":
            reply = await worker.prime_pollers(**args)
        elif command == "poll":
            reply = await worker.poll(**args)
        elif command == "close_pollers":
            reply = worker.close_pollers()
        else:
            reply = {"error": f"Unknown command {command!r}."}
        conn.send(reply)
