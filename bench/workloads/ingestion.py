"""Ingestion: step the callback rate up until HTTP p99 passes 25 ms; with 1 and 2 worker processes."""

from __future__ import annotations

from typing import Any

from bench.httpclient import HttpPool
from bench.measure import Meter, http_report
from bench.runner import Run
from bench.sender import send_at_rate
from bench.services import SECRETS

P99_TARGET_MS = 25.0
# Past this the knee is behind us: stop stepping instead of burying the hub.
_GIVE_UP_MS = 250.0


def _within_target(step: dict[str, Any], rate: int, duration: float) -> bool:
    on_time: bool = step["callbacks"] >= 0.95 * rate * duration
    errors: int = step["errors"]
    p99_ms: float = step["http"]["p99_ms"]
    return on_time and errors == 0 and p99_ms <= P99_TARGET_MS


async def run(run: Run) -> dict[str, Any]:
    scale = run.scale
    per_workers = []
    for workers in scale.ingest_workers:
        steps: list[dict[str, Any]] = []
        best = 0
        async with run.hub(workers=workers, agents=scale.agents) as target:
            jobs = run.jobs[: scale.agents]
            pool = HttpPool("127.0.0.1", target.server.port)
            try:
                for rate in scale.ingest_rates:
                    meter = Meter(target, None).start()
                    sent = await send_at_rate(pool, SECRETS.webhook, jobs, rate, scale.ingest_step_s)
                    window = meter.stop()
                    step = {"rate": rate, **http_report(sent, window.wall_s), "window": window.as_dict()}
                    steps.append(step)
                    if _within_target(step, rate, scale.ingest_step_s) and window.valid:
                        best = rate
                    if step["http"]["p99_ms"] > _GIVE_UP_MS:
                        break
            finally:
                pool.close()
        per_workers.append({"workers": workers, "best_rate_at_p99_25ms": best, "steps": steps})
    return {"agents": scale.agents, "runs": per_workers}
