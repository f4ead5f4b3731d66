"""Realistic: 10 dashboards on each of 1k agents, heartbeats at 50 / 200 / 500 callbacks/s."""

from __future__ import annotations

from typing import Any

from bench.runner import Run
from bench.workloads.push import open_sockets, push_step


async def run(run: Run) -> dict[str, Any]:
    scale = run.scale
    async with run.hub(agents=scale.agents) as target:
        jobs = run.jobs[: scale.agents]
        await open_sockets(run, target, [j.agent_id for j in jobs for _ in range(scale.per_agent)])
        steps = [await push_step(run, target, jobs, rate, scale.step_s) for rate in scale.realistic_rates]
    return {"sockets": scale.agents * scale.per_agent, "agents": scale.agents, "steps": steps}
