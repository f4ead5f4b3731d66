"""Idle capacity: RSS per idle socket and idle CPU at 1k / 5k / 10k open sockets."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.measure import Meter
from bench.runner import Run
from bench.workloads.push import open_sockets


async def run(run: Run) -> dict[str, Any]:
    scale = run.scale
    agents = min(scale.agents, max(scale.idle_steps))
    steps = []
    async with run.hub(agents=agents) as target:
        jobs = run.jobs[:agents]
        await asyncio.sleep(1.0)  # let start-up allocations settle before the baseline
        baseline = target.server.rss()
        opened = 0
        for count in scale.idle_steps:
            more = count - opened
            await open_sockets(run, target, [jobs[(opened + i) % agents].agent_id for i in range(more)])
            opened = count
            window = Meter(target, run.fleet).start()
            await asyncio.sleep(scale.idle_window_s)  # the measured idle interval itself
            measured = window.stop()
            rss = target.server.rss()
            steps.append(
                {
                    "sockets": count,
                    "rss_mib": round(rss / 2**20, 1),
                    "rss_kib_per_socket": round((rss - baseline) / 1024 / count, 1),
                    "idle_cpu_share": round(measured.server_cpu_s / measured.wall_s, 4),
                    "window": measured.as_dict(),
                }
            )
    return {"baseline_rss_mib": round(baseline / 2**20, 1), "agents": agents, "steps": steps}
