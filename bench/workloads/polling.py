"""Polling baseline: the same dashboards polling every 2 s with If-None-Match, against push.

Both sides see the same changes (heartbeats spread over the dashboards' agents); what differs is
the hub and Postgres CPU it costs, and how stale each dashboard is (change to seen).
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.measure import Meter
from bench.runner import Run
from bench.sender import Sent, send_at_rate
from bench.services import SECRETS
from bench.stats import summarize
from bench.target import Target
from bench.workloads.push import CATCH_UP_S, open_sockets

POLL_INTERVAL_S = 2.0


def _staleness(sent: list[Sent], deliveries: list[tuple[str, int, int]]) -> dict[str, Any]:
    """For each change, the time until the dashboard first saw it (or a newer version)."""
    first_seen: dict[str, list[tuple[int, int]]] = {}
    for agent_id, version, received in deliveries:
        first_seen.setdefault(agent_id, []).append((received, version))
    samples: list[int] = []
    for s in sent:
        seen = [t for t, v in first_seen.get(s.agent_id, []) if v >= s.version and t >= s.send_ns]
        if seen:
            samples.append(min(seen) - s.send_ns)
    summary = summarize(samples)
    mean_ms = round(sum(samples) / len(samples) / 1e6, 1) if samples else 0.0
    return {"changes": len(sent), "seen": len(samples), "mean_ms": mean_ms, **summary.as_dict()}


async def _side(run: Run, target: Target, mode: str) -> dict[str, Any]:
    from bench.httpclient import HttpPool

    scale = run.scale
    jobs = run.jobs[: scale.poll_dashboards]
    agent_ids = [j.agent_id for j in jobs]
    if mode == "push":
        await open_sockets(run, target, agent_ids)
    await run.fleet.collect()
    pool = HttpPool("127.0.0.1", target.server.port)
    meter = Meter(target, run.fleet).start()
    changes = send_at_rate(pool, SECRETS.webhook, jobs, scale.poll_changes_per_s, scale.poll_window_s)
    if mode == "poll":
        _, sent = await asyncio.gather(
            run.fleet.poll(
                "127.0.0.1",
                target.server.port,
                run.token,
                agent_ids,
                interval=POLL_INTERVAL_S,
                duration=scale.poll_window_s + POLL_INTERVAL_S,
            ),
            changes,
        )
    else:
        sent = await changes
        await run.fleet.wait_versions({s.agent_id: s.version for s in sent}, CATCH_UP_S)
    window = meter.stop()
    pool.close()
    got = await run.fleet.collect()
    result: dict[str, Any] = {
        "staleness": _staleness(sent, got.deliveries),
        "window": window.as_dict(),
        "polls": got.polls,
    }
    result["hub_cpu_share"] = round(window.server_cpu_s / window.wall_s, 4)
    result["postgres_cpu_share"] = round(window.postgres_cpu_s / window.wall_s, 4)
    return result


async def run(run: Run) -> dict[str, Any]:
    scale = run.scale
    sides: dict[str, Any] = {}
    for mode in ("poll", "push"):
        async with run.hub(agents=scale.poll_dashboards) as target:
            sides[mode] = await _side(run, target, mode)
    push_cpu = sides["push"]["window"]["server_cpu_s"]
    ratio = round(sides["poll"]["window"]["server_cpu_s"] / push_cpu, 1) if push_cpu else None
    return {
        "dashboards": scale.poll_dashboards,
        "changes_per_s": scale.poll_changes_per_s,
        "poll_interval_s": POLL_INTERVAL_S,
        **sides,
        "push_cheaper_x": ratio,
    }
