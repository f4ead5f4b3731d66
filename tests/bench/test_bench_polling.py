"""The polling workload: its arithmetic on made-up records, and one tiny run against real servers.

Timings are not asserted (shared CI machines); what must hold anywhere is that every poll is
answered with the status the window calls for and that every dashboard sees every change.
"""

from __future__ import annotations

import pytest

pytest.importorskip("picows", reason="picows (the bench's websocket client) is a dev dependency")

from bench.fleet import Polled
from bench.measure import Window
from bench.peers.venvs import ready
from bench.report import markdown, polling_rows
from bench.runner import Scale
from bench.sender import Sent
from bench.suite import run_suite
from bench.workloads.polling import dashboard_agents, poll_report, staleness

MS = 1_000_000


def _sent(agent_id: str, version: int, at_ms: int, status: int = 200) -> Sent:
    return Sent(agent_id, version, at_ms * MS, 2 * MS, status)


def test_staleness_is_per_dashboard_and_counts_a_newer_version_as_seen() -> None:
    dashboards = [(0, "a"), (1, "a"), (2, "b")]
    seen = [
        (0, "a", 2, 1_500 * MS),
        (0, "a", 1, 500 * MS),  # before the change was sent: not an answer to it
        (1, "a", 3, 3_000 * MS),  # skipped version 2: seeing 3 covers it
    ]
    sent = [_sent("a", 2, 1_000), _sent("b", 5, 1_000), _sent("a", 0, 1_000, status=503)]

    result = staleness(sent, seen, dashboards)

    assert result["changes"] == 2  # the failed callback changed nothing
    assert result["count"] == 2
    assert result["unseen"] == 1  # dashboard 2 never saw agent b's change
    assert result["mean_ms"] == 1_250.0  # (500 + 2000) / 2
    assert result["max_ms"] == 2_000.0


def test_poll_report_counts_every_answer_but_200_and_304_as_an_error() -> None:
    polled = Polled(
        requests=10,
        statuses={200: 3, 304: 4, 503: 1, 500: 1},
        transport_errors=1,
        latencies_ns=[MS] * 9,
    )
    window = Window(
        wall_s=2.0, server_cpu_s=0.009, generator_cpu_s=0.1, postgres_cpu_s=0.0, redis_cpu_s=0.0, server_rss_mib=1
    )

    report = poll_report(polled, window, None, [])

    assert report["answered"] == 9
    assert report["errors"] == 3
    assert report["statuses"] == {"200": 3, "304": 4, "500": 1, "503": 1}
    assert report["server_cpu_ms_per_poll"] == 1.0
    assert "staleness" not in report


def test_polling_rows_say_not_run_without_a_polling_result() -> None:
    rows = polling_rows({"workloads": {}})
    assert rows
    assert all(measured == "not run" for _, measured, _, _ in rows)


def test_dashboards_spread_evenly_over_the_agents() -> None:
    from bench.sender import Job

    jobs = [Job("a", "ja"), Job("b", "jb")]
    assert dashboard_agents(jobs, 5) == ["a", "b", "a", "b", "a"]


TINY_POLLING = Scale.quick().override(
    fleet=2,
    poll_dashboards=20,
    poll_agents=4,
    poll_changes_per_s=4.0,
    poll_window_s=1.5,
    poll_cost_window_s=1.0,
)


@pytest.mark.skipif(not ready("litestar"), reason="the naive poller's venv is absent: run `python -m bench venvs`")
async def test_polling_runs_the_hub_and_the_naive_poller_side_by_side() -> None:
    result = await run_suite("quick", TINY_POLLING, ["polling"], pin=False)

    polling = result["workloads"]["polling"]
    hub, naive = polling["hub"], polling["baseline"]
    for window in (hub["mixed"], hub["current"], hub["full"], naive["mixed"], naive["full"]):
        assert window["errors"] == 0, (window["statuses"], window["error_samples"])
        assert window["answered"] == window["polls"] > 0
    for mixed in (hub["mixed"], naive["mixed"]):
        assert mixed["callbacks"]["errors"] == 0, mixed["callbacks"]["statuses"]
        assert mixed["staleness"]["unseen"] == 0
        assert mixed["staleness"]["count"] == mixed["staleness"]["changes"] * 5  # 5 dashboards per agent
    assert "200" in hub["mixed"]["statuses"]
    assert hub["current"]["statuses"] == {"304": hub["current"]["polls"]}
    assert hub["full"]["statuses"] == {"200": hub["full"]["polls"]}
    assert naive["mixed"]["statuses"] == {"200": naive["mixed"]["polls"]}
    assert polling["push"]["lost_sockets"] == 0
    assert naive["name"] == "naive poller"
    assert "## Polling" in markdown(result)
    answered = polling_rows(result)[0]
    assert answered[2] == "met", answered
