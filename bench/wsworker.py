"""One load-generator process: many picows websocket clients (or REST pollers) and their records.

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

from bench.httpclient import HttpPool

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
        self.polls = {"requests": 0, "changed": 0, "not_modified": 0, "errors": 0}

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
            "polls": dict(self.polls),
        }

    def close(self) -> dict[str, Any]:
        for client in self.clients:
            if client.transport is not None:
                client.transport.send_close()
                client.transport.disconnect()
        closed = len(self.clients)
        self.clients = []
        return {"closed": closed}

    async def poll(
        self, host: str, port: int, token: str, agent_ids: list[str], interval: float, duration: float
    ) -> dict[str, Any]:
        """Each dashboard polls its agent every ``interval`` s with If-None-Match, on its own connection."""
        loop = asyncio.get_running_loop()
        end = loop.time() + duration

        async def dashboard(agent_id: str) -> None:
            pool = HttpPool(host, port, limit=1)
            etag = ""
            next_at = loop.time() + random.uniform(0, interval)
            try:
                while next_at < end:
                    await asyncio.sleep(max(0.0, next_at - loop.time()))
                    next_at += interval
                    headers = {"Authorization": f"Bearer {token}"}
                    if etag:
                        headers["If-None-Match"] = etag
                    try:
                        response = await pool.request("GET", f"/api/agents/{agent_id}/instance", headers=headers)
                    except Exception:
                        self.polls["errors"] += 1
                        continue
                    now = time.time_ns()
                    self.polls["requests"] += 1
                    if response.status == 304:
                        self.polls["not_modified"] += 1
                    elif response.status == 200:
                        self.polls["changed"] += 1
                        etag = response.headers.get(b"etag", b"").decode()
                        self.records.deliveries.append((agent_id, _status.decode(response.body).version, now))
                    else:
                        self.polls["errors"] += 1
            finally:
                pool.close()

        await asyncio.gather(*(dashboard(a) for a in agent_ids))
        return dict(self.polls)


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
        elif command == "poll":
            reply = await worker.poll(**args)
        else:
            reply = {"error": f"Unknown command {command!r}."}
        conn.send(reply)
