"""``python -m bench pollcost``: hub CPU per REST poll, current (304) and changed (200).

A real ``status-hub serve`` (one worker, on core 0, Postgres and Redis) and this process as the
load generator on core 1. Agents are made and provisioned through the admin API; each dashboard
polls its agent on its own keep-alive connection with a dashboard JWT, at a fixed total rate
(open loop; 0 means as fast as the connections go). The server's CPU is read from /proc over the
window, less what the idle server used over as long (its timers), and divided by the polls:

- current (304): ``If-None-Match`` carries the current ETag (the poll cache answers, no database);
- changed (200): no ``If-None-Match`` (one read of Postgres a poll);
- bare uvicorn (304): the same polls answered by a bare ASGI app under uvicorn (same loop, same
  HTTP parser, no access log): what this machine charges for the HTTP server, the socket calls and
  waking a process at all, which no change in the hub can go below. On a virtual machine that
  floor is high and grows as the rate falls (each poll wakes an idle core), so compare the hub
  with it at the same rate.

With ``--callgrind`` each server runs under valgrind's callgrind instead, polled as fast as it
answers, and the figure is instructions per poll (user space only): slow, but the same from run to
run, where CPU time on a shared or virtual machine varies by tens of percent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench import procs
from bench.httpclient import HttpPool
from bench.runner import RESULTS
from bench.services import GENERATOR_CORE, Database, ServerProcess, free_port, hub_server
from bench.target import dashboard_token, hub_agents

# Seconds the idle server is watched for its own timers' CPU, subtracted from each window.
IDLE_WINDOW_S = 5.0
# Polls of each dashboard before measuring: the poll cache watches an agent from its first poll.
WARM_UP_ROUNDS = 20
# Seconds a server may take to start under valgrind (it runs the migrations there too).
CALLGRIND_START_S = 600.0
_REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    status: int
    conditional: bool


CURRENT = Phase("current (304)", 304, conditional=True)
CHANGED = Phase("changed (200)", 200, conditional=False)
BARE = Phase("bare uvicorn (304)", 304, conditional=True)


async def bare_304(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The floor's ASGI app: the hub's 304 headers for any request, nothing else."""
    if scope["type"] != "http":
        return
    headers = [(b"etag", b'"00000000-0000-0000-0000-000000000000.1"'), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 304, "headers": headers})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _bare_server(port: int) -> ServerProcess:
    argv = [sys.executable, "-m", "uvicorn", "bench.poll_cost:bare_304", "--host", "127.0.0.1", "--port", str(port)]
    argv += [
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--lifespan",
        "off",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    log_path = RESULTS / "logs" / f"pollcost-bare-{port}.log"
    return ServerProcess(name="bare uvicorn", argv=argv, env=dict(os.environ), port=port, log_path=log_path, cwd=_REPO)


class _Meter(Protocol):
    unit: str
    scale: float  # per poll, the figure is (delta / polls) * scale, in unit

    async def read(self) -> float:
        """A cumulative count for the server: CPU seconds, or instructions."""
        ...


class _CpuMeter:
    unit = "ms"
    scale = 1000.0

    def __init__(self, pid: int) -> None:
        self.pid = pid

    async def read(self) -> float:
        return procs.on_cpu_seconds(self.pid)


class _CallgrindMeter:
    unit = "k instructions"
    scale = 0.001

    def __init__(self, pid: int) -> None:
        self.pid = pid

    async def read(self) -> float:
        """Instructions run since instrumentation was switched on, all threads together."""
        argv = ["callgrind_control", "-e", "Ir", str(self.pid)]
        done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, check=True)
        counts = re.findall(r"^\s*Th\s+\d+\s+([\d,]+)\s*$", done.stdout, re.MULTILINE)
        if not counts:
            raise RuntimeError(f"callgrind_control said nothing countable: {done.stdout!r}")
        return float(sum(int(count.replace(",", "")) for count in counts))

    async def start(self) -> None:
        argv = ["callgrind_control", "-i", "on", str(self.pid)]
        await asyncio.to_thread(subprocess.run, argv, capture_output=True, check=True)


def _under_callgrind(server: ServerProcess) -> ServerProcess:
    """The same server under callgrind, not counting until told (start-up runs uninstrumented)."""
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null"]
    return dataclasses.replace(server, argv=[*valgrind, *server.argv])


async def _started(server: ServerProcess, callgrind: bool) -> _Meter:
    await server.start(timeout=CALLGRIND_START_S if callgrind else 60.0)
    return _CallgrindMeter(server.pid) if callgrind else _CpuMeter(server.pid)


class _Dashboard:
    """One dashboard: its agent, its own connection, and the ETag it last saw."""

    def __init__(self, port: int, agent_id: str, token: str) -> None:
        self.pool = HttpPool("127.0.0.1", port, limit=1)
        self.path = f"/api/agents/{agent_id}/instance"
        self.authorization = f"Bearer {token}"
        self.etag = ""

    async def poll(self, *, conditional: bool) -> int:
        headers = {"Authorization": self.authorization}
        if conditional and self.etag:
            headers["If-None-Match"] = self.etag
        response = await self.pool.request("GET", self.path, headers=headers)
        self.etag = response.headers.get(b"etag", b"").decode() or self.etag
        return response.status


async def _drive(dashboards: list[_Dashboard], polls: int, rate: float, phase: Phase) -> dict[int, int]:
    """``polls`` polls spread over the dashboards: each polls every len(dashboards)/rate seconds."""
    loop = asyncio.get_running_loop()
    statuses: dict[int, int] = {}
    per_dashboard, extra = divmod(polls, len(dashboards))
    interval = len(dashboards) / rate if rate > 0 else 0.0
    start = loop.time()

    async def one(index: int, dashboard: _Dashboard) -> None:
        next_at = start + interval * index / len(dashboards)
        for _ in range(per_dashboard + (index < extra)):
            if interval:
                delay = next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # the open-loop schedule, not a synchronisation
                next_at += interval
            status = await dashboard.poll(conditional=phase.conditional)
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(one(i, d) for i, d in enumerate(dashboards)))
    return statuses


def _profile(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    """py-spy on the server, counting only while it holds the GIL (uvloop waits for events without
    it): raw collapsed stacks, one line per stack with its sample count."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    argv = [spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", "500"]
    argv += ["--format", "raw", "--output", str(output), "--nonblocking", "--gil"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _phase(
    server: ServerProcess,
    meter: _Meter,
    dashboards: list[_Dashboard],
    phase: Phase,
    polls: int,
    rate: float,
    profile: Path | None,
) -> dict[str, Any]:
    pid = server.pid
    idle, idle_wall = await meter.read(), time.monotonic()
    await asyncio.sleep(IDLE_WINDOW_S)  # a measurement window of the idle server
    idle_rate = (await meter.read() - idle) / (time.monotonic() - idle_wall)
    spy = None
    if profile is not None:
        expected = polls / rate if rate > 0 else 10.0
        spy = _profile(pid, expected, profile.with_name(f"{profile.stem}-{phase.status}{profile.suffix}"))
    used, cpu, system = await meter.read(), procs.on_cpu_seconds(pid), procs.system_seconds(pid)
    generator_cpu, wall = time.process_time(), time.monotonic()
    statuses = await _drive(dashboards, polls, rate, phase)
    wall = time.monotonic() - wall
    used = await meter.read() - used
    cpu = procs.on_cpu_seconds(pid) - cpu
    system = procs.system_seconds(pid) - system
    generator_cpu = time.process_time() - generator_cpu
    if spy is not None:
        await asyncio.to_thread(spy.wait)
    net = max(0.0, used - idle_rate * wall)
    return {
        "phase": phase.name,
        "polls": polls,
        "wall_s": round(wall, 2),
        "rate_per_s": round(polls / wall),
        "per_poll": round(net / polls * meter.scale, 4),
        "unit": meter.unit,
        "server_cpu_s": round(cpu, 3),
        # From clock ticks, so approximate.
        "kernel_share": round(min(1.0, system / cpu), 2) if cpu else 0.0,
        "idle_per_s": round(idle_rate * meter.scale, 4),
        "generator_util": round(generator_cpu / wall, 3),
        # Anything but the expected status (a 503 busy when the rate is past the hub's capacity).
        "unexpected": {code: n for code, n in statuses.items() if code != phase.status},
    }


async def measure(
    *,
    polls: int = 20_000,
    dashboards: int = 100,
    rate: float = 400.0,
    bare: bool = True,
    callgrind: bool = False,
    profile: Path | None = None,
) -> list[dict[str, Any]]:
    os.sched_setaffinity(0, {GENERATOR_CORE})
    rate = 0.0 if callgrind else rate
    results = []
    async with Database("pollcost") as database:
        port = free_port()
        server = hub_server(database, port, RESULTS / "logs" / f"pollcost-{port}.log")
        server = _under_callgrind(server) if callgrind else server
        meter = await _started(server, callgrind)
        admin = HttpPool("127.0.0.1", server.port)
        pollers: list[_Dashboard] = []
        try:
            jobs = await hub_agents(admin, dashboards)
            token = dashboard_token()
            pollers = [_Dashboard(server.port, job.agent_id, token) for job in jobs]
            await _warm_up(pollers, meter)
            for phase in (CURRENT, CHANGED):
                results.append(await _phase(server, meter, pollers, phase, polls, rate, profile))
        finally:
            for dashboard in pollers:
                dashboard.pool.close()
            admin.close()
            server.stop(timeout=120.0 if callgrind else 15.0)
    if bare:
        results.append(await _measure_bare(pollers, polls, rate, callgrind))
    return results


async def _warm_up(pollers: list[_Dashboard], meter: _Meter) -> None:
    for _ in range(WARM_UP_ROUNDS):
        await asyncio.gather(*(d.poll(conditional=True) for d in pollers))
    if isinstance(meter, _CallgrindMeter):
        await meter.start()
        # Valgrind translates code as it first runs: once more, so that is not counted either.
        await asyncio.gather(*(d.poll(conditional=True) for d in pollers))
        await asyncio.gather(*(d.poll(conditional=False) for d in pollers))


async def _measure_bare(hub_pollers: list[_Dashboard], polls: int, rate: float, callgrind: bool) -> dict[str, Any]:
    """The same requests (paths, token, ETags) against the bare app."""
    server = _bare_server(free_port())
    server = _under_callgrind(server) if callgrind else server
    meter = await _started(server, callgrind)
    pollers = []
    try:
        for hub_poller in hub_pollers:
            poller = _Dashboard(server.port, "", "")
            poller.path, poller.authorization, poller.etag = hub_poller.path, hub_poller.authorization, hub_poller.etag
            pollers.append(poller)
        await _warm_up(pollers, meter)
        return await _phase(server, meter, pollers, BARE, polls, rate, None)
    finally:
        for poller in pollers:
            poller.pool.close()
        server.stop(timeout=120.0 if callgrind else 15.0)


def report(results: list[dict[str, Any]]) -> str:
    lines = ["Server cost per REST poll (one process on its own core; its idle timers subtracted):"]
    for r in results:
        lines.append(
            f"  {r['phase']}: {r['per_poll']:,.3f} {r['unit']} per poll ({r['polls']:,} polls at "
            f"{r['rate_per_s']:,}/s; {r['server_cpu_s']} s CPU, ~{r['kernel_share']:.0%} of it in the "
            f"kernel; generator at {r['generator_util']:.0%} of its core)"
        )
        if r["unexpected"]:
            lines.append(f"    INVALID: other answers {r['unexpected']} (lower --rate)")
    return "\n".join(lines)
