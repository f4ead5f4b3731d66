"""Polling: dashboards polling every 2 s, against status-hub and, in the same run, against the naive
poller it replaces (one SELECT per poll, always a 200); and the same dashboards pushed to, for scale.

Each window is measured on its own (server, Postgres and generator CPU over its wall time):

- mixed: every dashboard polls with If-None-Match (its last ETag) while heartbeats arrive at the
  configured rate, spread over the dashboards' agents. It reports the answers by status, the poll
  latency, the staleness (per dashboard and change: callback sent to that dashboard's first answer
  carrying it) and the callbacks' own errors and latency. Run on the hub and on the naive poller.
- current (hub only): nothing changes and every ETag is current, so every answer is a 304; server
  CPU / polls is the price of a current poll.
- full (hub and naive poller): no If-None-Match and nothing changes, so every answer is a full read
  (200); server CPU / polls is the price of a changed poll, and for the naive poller of any poll.
- push: the same dashboards as websockets and the same changes; staleness is per delivery.

Before each polling window every dashboard makes one conditional GET outside it, so its connection
is open and its ETag current when the window starts, as for a dashboard that has loaded its page.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Sequence
from typing import Any

from bench.fleet import Polled
from bench.httpclient import HttpPool
from bench.measure import Meter, Window, http_report
from bench.peers.servers import naive_poller
from bench.runner import Run
from bench.sender import Job, Sent, send_at_rate
from bench.services import SECRETS
from bench.stats import summarize
from bench.target import Target
from bench.workloads.push import open_sockets, push_step

POLL_INTERVAL_S = 2.0
# Polls go on this long past an interval after the last change is sent, so that every dashboard polls
# once after the change is committed even when its callback is slow: a change a dashboard never saw
# is counted (unseen) but gives no staleness sample.
CHANGE_GRACE_S = 1.0


def dashboard_agents(jobs: Sequence[Job], dashboards: int) -> list[str]:
    """The agent each dashboard polls: ``dashboards`` spread evenly over ``jobs``."""
    return [jobs[i % len(jobs)].agent_id for i in range(dashboards)]


def staleness(
    sent: Sequence[Sent], seen: Sequence[tuple[int, str, int, int]], dashboards: Sequence[tuple[int, str]]
) -> dict[str, Any]:
    """For each change and each dashboard of its agent: the time from the callback's send until that
    dashboard's first answer with the change's version or a newer one. ``unseen`` counts the pairs
    whose dashboard never got it within the window."""
    by_dashboard: dict[int, tuple[list[int], list[int]]] = {}
    for key, _, version, received in sorted(seen, key=lambda s: s[3]):
        times, versions = by_dashboard.setdefault(key, ([], []))
        times.append(received)
        versions.append(version)
    of_agent: dict[str, list[int]] = {}
    for key, agent_id in dashboards:
        of_agent.setdefault(agent_id, []).append(key)
    samples: list[int] = []
    unseen = 0
    changes = [s for s in sent if s.version]  # a failed callback changed nothing
    for change in changes:
        for key in of_agent.get(change.agent_id, []):
            times, versions = by_dashboard.get(key, ([], []))
            first = bisect.bisect_left(times, change.send_ns)
            at = next((times[i] for i in range(first, len(times)) if versions[i] >= change.version), None)
            if at is None:
                unseen += 1
            else:
                samples.append(at - change.send_ns)
    return {"changes": len(changes), "unseen": unseen, **summarize(samples).as_dict()}


def _per_poll_ms(cpu_s: float, polls: int) -> float | None:
    return round(cpu_s * 1e3 / polls, 4) if polls else None


def poll_report(
    polled: Polled, window: Window, sent: Sequence[Sent] | None, dashboards: Sequence[tuple[int, str]]
) -> dict[str, Any]:
    answered = sum(polled.statuses.values())
    good = polled.statuses.get(200, 0) + polled.statuses.get(304, 0)
    wall = window.wall_s
    result: dict[str, Any] = {
        "polls": polled.requests,
        "answered": answered,
        "polls_per_s": round(polled.requests / wall, 1) if wall else 0.0,
        "statuses": {str(k): v for k, v in sorted(polled.statuses.items())},
        "transport_errors": polled.transport_errors,
        # Anything but a 200 or a 304, answered or not.
        "errors": polled.requests - good,
        "error_samples": polled.errors,
        "latency": summarize(polled.latencies_ns).as_dict(),
        "window": window.as_dict(),
        "server_cpu_share": round(window.server_cpu_s / wall, 4) if wall else 0.0,
        "postgres_cpu_share": round(window.postgres_cpu_s / wall, 4) if wall else 0.0,
        "server_cpu_ms_per_poll": _per_poll_ms(window.server_cpu_s, answered),
        "postgres_cpu_ms_per_poll": _per_poll_ms(window.postgres_cpu_s, answered),
    }
    if sent is not None:
        result["staleness"] = staleness(sent, polled.seen, dashboards)
        result["callbacks"] = http_report(sent, wall)
    return result


async def _window(
    run: Run,
    target: Target,
    dashboards: Sequence[tuple[int, str]],
    *,
    conditional: bool,
    duration: float,
    jobs: Sequence[Job] = (),
    rate: float = 0.0,
) -> dict[str, Any]:
    """Poll for ``duration`` s; with ``rate``, send that many callbacks a second meanwhile and poll
    one more interval (and a grace), so that every dashboard polls after the last change."""
    await run.fleet.prime_pollers()
    pool = HttpPool("127.0.0.1", target.server.port)
    try:
        meter = Meter(target, run.fleet).start()
        polls = run.fleet.poll(
            interval=POLL_INTERVAL_S,
            duration=duration + (POLL_INTERVAL_S + CHANGE_GRACE_S if rate else 0.0),
            conditional=conditional,
        )
        sent: list[Sent] | None = None
        if rate:
            polled, sent = await asyncio.gather(polls, send_at_rate(pool, SECRETS.webhook, jobs, rate, duration))
        else:
            polled = await polls
        window = meter.stop()
    finally:
        pool.close()
    return poll_report(polled, window, sent, dashboards)


async def _open_pollers(run: Run, target: Target, agent_ids: list[str]) -> list[tuple[int, str]]:
    return await run.fleet.open_pollers("127.0.0.1", target.server.port, run.token, agent_ids)


async def _hub_polling(run: Run) -> dict[str, Any]:
    scale = run.scale
    async with run.hub(agents=scale.poll_agents) as target:
        return await _windows(run, target, run.jobs[: scale.poll_agents], price_current=True)


async def _baseline_polling(run: Run) -> dict[str, Any]:
    async with naive_poller(run.results) as target:
        pool = HttpPool("127.0.0.1", target.server.port)
        try:
            jobs = await target.ensure_agents(pool, run.scale.poll_agents)
        finally:
            pool.close()
        return await _windows(run, target, jobs, price_current=False)


async def _windows(run: Run, target: Target, jobs: Sequence[Job], *, price_current: bool) -> dict[str, Any]:
    """The mixed window, then the pricing windows: all 304 (the hub only: the naive poller always
    answers 200) and all 200."""
    scale = run.scale
    dashboards = await _open_pollers(run, target, dashboard_agents(jobs, scale.poll_dashboards))
    result: dict[str, Any] = {"name": target.name}
    try:
        result["mixed"] = await _window(
            run,
            target,
            dashboards,
            conditional=True,
            duration=scale.poll_window_s,
            jobs=jobs,
            rate=scale.poll_changes_per_s,
        )
        if price_current:
            result["current"] = await _window(
                run, target, dashboards, conditional=True, duration=scale.poll_cost_window_s
            )
        result["full"] = await _window(run, target, dashboards, conditional=False, duration=scale.poll_cost_window_s)
    finally:
        await run.fleet.close_pollers()
    return result


async def _push(run: Run) -> dict[str, Any]:
    scale = run.scale
    async with run.hub(agents=scale.poll_agents) as target:
        jobs = run.jobs[: scale.poll_agents]
        await open_sockets(run, target, dashboard_agents(jobs, scale.poll_dashboards))
        step = await push_step(run, target, jobs, scale.poll_changes_per_s, scale.poll_window_s)
    window = step["window"]
    step["staleness"] = step["delivery"]  # a socket sees each change when it is delivered
    step["server_cpu_share"] = round(window["server_cpu_s"] / window["wall_s"], 4) if window["wall_s"] else 0.0
    step["postgres_cpu_share"] = round(window["postgres_cpu_s"] / window["wall_s"], 4) if window["wall_s"] else 0.0
    return step


def _ratio(numerator: float | None, denominator: float | None, digits: int = 1) -> float | None:
    return round(numerator / denominator, digits) if numerator and denominator else None


async def run(run: Run) -> dict[str, Any]:
    scale = run.scale
    hub = await _hub_polling(run)
    baseline = await _baseline_polling(run)
    push = await _push(run)
    per_304 = hub["current"]["server_cpu_ms_per_poll"]
    per_200 = hub["full"]["server_cpu_ms_per_poll"]
    per_read = baseline["full"]["server_cpu_ms_per_poll"]
    return {
        "dashboards": scale.poll_dashboards,
        "agents": scale.poll_agents,
        "changes_per_s": scale.poll_changes_per_s,
        "poll_interval_s": POLL_INTERVAL_S,
        "hub": hub,
        "baseline": baseline,
        "push": push,
        "hub_ms_per_304": per_304,
        "hub_ms_per_200": per_200,
        "baseline_ms_per_poll": per_read,
        # The naive poller's full read against the hub's current and changed polls, in server CPU.
        "baseline_vs_304_x": _ratio(per_read, per_304),
        "baseline_vs_200_x": _ratio(per_read, per_200),
        # Server CPU per second: the hub's mixed polling window against the push side.
        "push_cheaper_x": _ratio(hub["mixed"]["server_cpu_share"], push["server_cpu_share"]),
    }
