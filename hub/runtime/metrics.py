"""The counters this process keeps of its own health (shown by /healthz)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Metrics:
    publish_failures: int = 0
    # Statuses dropped from a full publish backlog (the reconcile repaired them).
    publish_dropped: int = 0
    slow_socket_closes: int = 0
    resyncs: int = 0
    reconcile_repairs: int = 0
    # 503 "busy" answers: a pool had no connection free in time.
    busy_answers: int = 0
