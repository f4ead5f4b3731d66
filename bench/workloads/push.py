"""One measured step of push traffic: callbacks at a rate, then every socket caught up, then the join."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.httpclient import HttpPool
from bench.measure import Meter, delivery_report, http_report
from bench.runner import Run
from bench.sender import Job, final_versions, send_at_rate
from bench.services import SECRETS
from bench.target import Target

CATCH_UP_S = 10.0


async def open_sockets(run: Run, target: Target, agent_ids: list[str]) -> dict[str, Any]:
    opened = await run.fleet.open(target.ws_url, run.token, agent_ids)
    if opened["failed"]:
        raise RuntimeError(f"{opened['failed']} of {len(agent_ids)} sockets failed to open: {opened['errors']}.")
    return opened


async def push_step(
    run: Run, target: Target, jobs: Sequence[Job], rate: float, duration: float, *, secret: str = SECRETS.webhook
) -> dict[str, Any]:
    pool = HttpPool("127.0.0.1", target.server.port)
    await run.fleet.collect()  # drop whatever arrived before the window
    meter = Meter(target, run.fleet).start()
    try:
        sent = await send_at_rate(pool, secret, jobs, rate, duration)
        behind = await run.fleet.wait_versions(final_versions(sent), CATCH_UP_S)
        window = meter.stop()
    finally:
        pool.close()
    got = await run.fleet.collect()
    result = {"rate": rate, **http_report(sent, window.wall_s), **delivery_report(sent, got, window.wall_s)}
    result["behind_after_catch_up"] = behind
    result["window"] = window.as_dict()
    deliveries = result["deliveries"]
    result["server_cpu_us_per_delivery"] = round(window.server_cpu_s * 1e6 / deliveries, 1) if deliveries else None
    return result
