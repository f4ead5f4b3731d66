"""The load generator's worker processes, pinned to the generator core, driven over pipes."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from bench import wsworker
from bench.services import GENERATOR_CORE


@dataclass(slots=True)
class Collected:
    deliveries: list[tuple[str, int, int]] = field(default_factory=list)
    finals: list[tuple[str, int]] = field(default_factory=list)
    close_codes: dict[int, int] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)


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

    def _split(self, agent_ids: list[str]) -> list[list[str]]:
        return [agent_ids[i :: self.size] for i in range(self.size)]

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
            for key, count in reply["polls"].items():
                out.polls[key] = out.polls.get(key, 0) + count
        return out

    async def close_sockets(self) -> int:
        return sum(r["closed"] for r in await self._each("close", [{}] * self.size))

    async def poll(
        self, host: str, port: int, token: str, agent_ids: list[str], *, interval: float, duration: float
    ) -> None:
        args = dict(host=host, port=port, token=token, interval=interval, duration=duration)
        await self._each("poll", [{**args, "agent_ids": p} for p in self._split(agent_ids)])


def pin_here(core: int = GENERATOR_CORE) -> None:
    """Pin the orchestrator (it sends the callbacks) to the generator core."""
    os.sched_setaffinity(0, {core})
