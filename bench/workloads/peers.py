"""Peers side by side: the same sockets and callbacks against status-hub and each peer, in one run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from bench.httpclient import HttpPool
from bench.peers.servers import peer_target
from bench.runner import Run
from bench.target import Target
from bench.workloads.push import open_sockets, push_step

PEERS = ("litestar", "django")


@asynccontextmanager
async def _hub(run: Run) -> AsyncIterator[Target]:
    async with run.hub(agents=1) as target:
        yield target


async def _measure(run: Run, opened: AbstractAsyncContextManager[Target]) -> dict[str, Any]:
    scale = run.scale
    async with opened as target:
        pool = HttpPool("127.0.0.1", target.server.port)
        try:
            job = (await target.ensure_agents(pool, 1))[0]
        finally:
            pool.close()
        try:
            await open_sockets(run, target, [job.agent_id] * scale.peer_width)
            step = await push_step(run, target, [job], scale.peer_rate, scale.step_s)
        finally:
            await run.fleet.close_sockets()
    return {"name": target.name, **step}


def _ahead(hub: dict[str, Any], peers: list[dict[str, Any]]) -> bool:
    def cpu(s: dict[str, Any]) -> float:
        return float(s["server_cpu_us_per_delivery"] or float("inf"))

    return all(hub["delivery"]["p99_ms"] < p["delivery"]["p99_ms"] and cpu(hub) < cpu(p) for p in peers)


async def run(run: Run) -> dict[str, Any]:
    servers = [await _measure(run, _hub(run))]
    for peer in PEERS:
        servers.append(await _measure(run, peer_target(peer, run.results)))
    hub, peers = servers[0], servers[1:]
    for s in servers:
        s["p99_vs_hub"] = (
            round(s["delivery"]["p99_ms"] / hub["delivery"]["p99_ms"], 2) if hub["delivery"]["p99_ms"] else None
        )
        cpu = s["server_cpu_us_per_delivery"]
        s["cpu_vs_hub"] = (
            round(cpu / hub["server_cpu_us_per_delivery"], 2) if cpu and hub["server_cpu_us_per_delivery"] else None
        )
    return {"width": run.scale.peer_width, "rate": run.scale.peer_rate, "servers": servers, "ahead": _ahead(hub, peers)}


def peer_table(result: dict[str, Any]) -> str:
    header = (
        "| server | p50 ms | p99 ms | last-sub p99 ms | HTTP p99 ms | lost / errors | p99 vs hub "
        "| CPU us/delivery | CPU vs hub | generator |"
    )
    lines = [
        f"## Peers: {result['width']} sockets on one agent, {result['rate']} callbacks/s (ratios: peer / status-hub)",
        "",
        header,
        "|" + "---|" * 10,
    ]
    for s in result["servers"]:
        w = s["window"]
        gen = f"{w['generator_util']:.0%}" + ("" if w["valid"] else " INVALID")
        lines.append(
            f"| {s['name']} | {s['delivery']['p50_ms']} | {s['delivery']['p99_ms']} | "
            f"{s['last_subscriber']['p99_ms']} | "
            f"{s['http']['p99_ms']} | {s['lost_sockets']} / {s['errors']} | {s['p99_vs_hub']}x | "
            f"{s['server_cpu_us_per_delivery']} | {s['cpu_vs_hub']}x | {gen} |"
        )
    return "\n".join(lines)
