"""Worst case: every subscriber on one agent; the last subscriber of each update is what counts."""

from __future__ import annotations

from typing import Any

from bench.runner import Run
from bench.workloads.push import open_sockets, push_step

# Deliveries per second offered to one hub process in this workload.
_DELIVERIES_PER_S = 20_000


async def run(run: Run) -> dict[str, Any]:
    scale = run.scale
    steps = []
    for width in scale.worst_widths:
        async with run.hub(agents=1) as target:
            job = run.jobs[0]
            await open_sockets(run, target, [job.agent_id] * width)
            rate = max(1.0, min(20.0, _DELIVERIES_PER_S / width))
            step = await push_step(run, target, [job], rate, scale.worst_updates / rate)
            steps.append({"width": width, **step})
    return {"steps": steps}
