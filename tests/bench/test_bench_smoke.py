"""The bench harness runs end to end against real servers, and no update is lost on the way.

Timings are not asserted: this runs on shared CI machines. What must hold anywhere is that the
harness works and that every dashboard socket ends on the last version of its agent.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("picows", reason="picows (the bench's websocket client) is a dev dependency")

from bench.report import markdown
from bench.runner import Scale
from bench.suite import run_suite

TINY = Scale.quick().override(
    fleet=2,
    idle_steps=(50,),
    idle_window_s=0.5,
    agents=5,
    per_agent=10,
    realistic_rates=(20,),
    step_s=1.0,
    worst_widths=(50,),
    worst_updates=5,
)


def _assert_nothing_lost(step: dict[str, Any]) -> None:
    assert step["errors"] == 0, step["statuses"]
    assert step["deliveries"] > 0
    assert step["lost_sockets"] == 0
    assert step["behind_after_catch_up"] == 0
    assert step["close_codes"] == {}


async def test_quick_harness_runs_and_loses_nothing() -> None:
    result = await run_suite("quick", TINY, ["idle", "realistic", "worst"], pin=False)

    workloads = result["workloads"]
    assert [s["sockets"] for s in workloads["idle"]["steps"]] == [50]
    assert workloads["realistic"]["sockets"] == 50
    for step in workloads["realistic"]["steps"] + workloads["worst"]["steps"]:
        _assert_nothing_lost(step)
    assert workloads["worst"]["steps"][0]["last_subscriber"]["count"] > 0
    assert "## Targets" in markdown(result)
