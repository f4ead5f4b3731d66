"""The workloads of the bench, each a coroutine ``run(run) -> dict`` of its figures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bench.runner import Run
from bench.workloads import cluster, fanout, idle, ingestion, peers, polling, realistic, worst

Workload = Callable[[Run], Awaitable[dict[str, Any]]]

# In the order they run; quick mode runs all of them but peers unless asked.
WORKLOADS: dict[str, Workload] = {
    "idle": idle.run,
    "realistic": realistic.run,
    "cluster": cluster.run,
    "worst": worst.run,
    "ingestion": ingestion.run,
    "fanout": fanout.run,
    "polling": polling.run,
    "peers": peers.run,
}
