"""Fan-out vs ingestion: callback HTTP p99 on quiet agents, alone and while a wide broadcast runs."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.httpclient import HttpPool
from bench.measure import Meter, delivery_report, http_report
from bench.runner import Run
from bench.sender import final_versions, send_at_rate
from bench.services import SECRETS
from bench.workloads.push import CATCH_UP_S, open_sockets


async def run(run: Run) -> dict[str, Any]:
    scale = run.scale
    async with run.hub(agents=scale.agents) as target:
        broadcast, quiet = run.jobs[0], run.jobs[1 : scale.agents]
        await open_sockets(run, target, [broadcast.agent_id] * scale.fanout_width)
        background = HttpPool("127.0.0.1", target.server.port)
        loud = HttpPool("127.0.0.1", target.server.port)
        try:
            meter = Meter(target, run.fleet).start()
            alone = await send_at_rate(background, SECRETS.webhook, quiet, scale.background_rate, scale.step_s)
            alone_window = meter.stop()

            await run.fleet.collect()
            meter = Meter(target, run.fleet).start()
            during, wide = await asyncio.gather(
                send_at_rate(background, SECRETS.webhook, quiet, scale.background_rate, scale.step_s),
                send_at_rate(loud, SECRETS.webhook, [broadcast], scale.fanout_rate, scale.step_s),
            )
            behind = await run.fleet.wait_versions(final_versions(wide), CATCH_UP_S)
            window = meter.stop()
            got = await run.fleet.collect()
        finally:
            background.close()
            loud.close()
    return {
        "width": scale.fanout_width,
        "broadcasts_per_s": scale.fanout_rate,
        "background_rate": scale.background_rate,
        "alone": {**http_report(alone, alone_window.wall_s), "window": alone_window.as_dict()},
        "during_broadcast": {**http_report(during, window.wall_s), "window": window.as_dict()},
        "broadcast": {**delivery_report(wide, got, window.wall_s), "behind_after_catch_up": behind},
    }
