"""The load generator's worker processes, pinned to the generator core, driven over pipes."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from bench import wsworker
from bench.services import GENERATOR_CORE

T = TypeVar("T")


@dataclass(slots=True)
class Collected:
    deliveries: list[tuple[str, int, int]] = field(default_factory=list)
    finals: list[tuple[str, int]] = field(default_factory=list)
    close_codes: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class Polled:
    """One polling window of the whole fleet."""

    requests: int = 0  # polls made: each one either answered or a transport error
    statuses: dict[int, int] = field(default_factory=dict)
    transport_errors: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_ns: list[int] = field(default_factory=list)
    # (dashboard key, agent id, version, receive time ns) whenever a dashboard got a newer version.
    seen: list[tuple[int, str, int, int]] = field(default_factory=list)


class Fleet:
    """``async with Fleet(4) as fleet``: worker processes that hold the websocket clients."""

    def __init__(self, size: int, core: int = GENERATOR_CORE) -> None:
        self.size = size
        self.core = core
        self._workers: list[tuple[BaseProcess, Connection]] = []

    async def __aenter__(self) -> Fleet:
        context = multiprocessing.get_context("spawn")
        for _ in range(self.size):
            parent, child = context.Pipe()
            process = context.Process(target=wsworker.main, args=(child, self.core), daemon=True)
            process.start()
            self._workers.append((process, parent))
        return self

    async def __aexit__(self, *_: object) -> None:
        # A stuck worker is killed below either way.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._each("exit", [{}] * self.size), 30)
        for process, conn in self._workers:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
            conn.close()
        self._workers = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p, _ in self._workers if p.pid is not None]

    async def _call(self, conn: Connection, command: str, args: dict[str, Any]) -> Any:
        conn.send((command, args))
        return await asyncio.get_running_loop().run_in_executor(None, conn.recv)

    async def _each(self, command: str, args: list[dict[str, Any]]) -> list[Any]:
        return list(
            await asyncio.gather(*(self._call(c, command, a) for (_, c), a in zip(self._workers, args, strict=True)))
        )

    def _split(self, items: list[T]) -> list[list[T]]:
        return [items[i :: self.size] for i in range(self.size)]

    async def open(self, base_url: str, token: str, agent_ids: list[str], *, concurrency: int = 64) -> dict[str, Any]:
        """Open one socket per entry of ``agent_ids`` and wait for each one's first snapshot."""
        parts = self._split(agent_ids)
        replies = await self._each(
            "open",
            [{"base_url": base_url, "token": token, "agent_ids": p, "concurrency": concurrency} for p in parts],
        )
        return {
            "opened": sum(r["opened"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "errors": [e for r in replies for e in r["errors"]][:5],
        }

    async def wait_versions(self, expected: dict[str, int], timeout: float) -> int:
        """Wait until every socket has its agent's expected version; return how many did not."""
        replies = await self._each("wait_versions", [{"expected": expected, "timeout": timeout}] * self.size)
        return sum(r["behind"] for r in replies)

    async def collect(self) -> Collected:
        out = Collected()
        for reply in await self._each("collect", [{}] * self.size):
            out.deliveries.extend(reply["deliveries"])
            out.finals.extend(reply["finals"])
            for code, count in reply["close_codes"].items():
                out.close_codes[code] = out.close_codes.get(code, 0) + count
        return out

    async def close_sockets(self) -> int:
        return sum(r["closed"] for r in await self._each("close", [{}] * self.size))

    async def open_pollers(
        self, host: str, port: int, token: str, agent_ids: list[str], *, concurrency: int = 16, timeout: float = 10.0
    ) -> list[tuple[int, str]]:
        """One polling dashboard per entry of ``agent_ids``, primed; return each one's (key, agent id)."""
        dashboards = list(enumerate(agent_ids))
        args = dict(host=host, port=port, token=token, concurrency=concurrency, timeout=timeout)
        replies = await self._each("open_pollers", [{**args, "dashboards": p} for p in self._split(dashboards)])
        _raise_if_unprimed(replies, len(dashboards))
        return dashboards

    async def prime_pollers(self, *, concurrency: int = 16, timeout: float = 10.0) -> None:
        """One conditional GET per dashboard, so that each starts the next window current."""
        replies = await self._each("prime_pollers", [{"concurrency": concurrency, "timeout": timeout}] * self.size)
        _raise_if_unprimed(replies, sum(r["primed"] + r["failed"] for r in replies))

    async def poll(self, *, interval: float, duration: float, conditional: bool, timeout: float = 10.0) -> Polled:
        args = dict(interval=interval, duration=duration, conditional=conditional, timeout=timeout)
        out = Polled()
        for reply in await self._each("poll", [args] * self.size):
            out.requests += reply["requests"]
            for code, count in reply["statuses"].items():
                out.statuses[code] = out.statuses.get(code, 0) + count
            out.transport_errors += reply["transport_errors"]
            out.errors.extend(reply["errors"])
            out.latencies_ns.extend(reply["latencies_ns"])
            out.seen.extend(reply["seen"])
        out.errors = out.errors[:5]
        return out

    async def close_pollers(self) -> int:
        return sum(r["closed"] for r in await self._each("close_pollers", [{}] * self.size))


def _raise_if_unprimed(replies: list[dict[str, Any]], total: int) -> None:
    failed = sum(r["failed"] for r in replies)
    if failed:
        errors = [e for r in replies for e in r["errors"]][:5]
        raise RuntimeError(f"{failed} of {total} polling dashboards failed their first read: {errors}.")


def pin_here(core: int = GENERATOR_CORE) -> None:
    """Pin the orchestrator (it sends the callbacks) to the generator core."""
    os.sched_setaffinity(0, {core})
