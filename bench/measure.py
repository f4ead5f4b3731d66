"""Measurement windows (CPU of every party, wall time) and the join of sends with receives."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench import procs
from bench.fleet import Collected, Fleet
from bench.sender import Sent, final_versions
from bench.stats import summarize
from bench.target import Target

# A generator using more than this share of its core measures itself, not the server.
GENERATOR_SATURATED = 0.90


@dataclass(slots=True)
class Window:
    wall_s: float
    server_cpu_s: float
    generator_cpu_s: float
    postgres_cpu_s: float
    redis_cpu_s: float
    server_rss_mib: float

    @property
    def generator_util(self) -> float:
        return self.generator_cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def valid(self) -> bool:
        return self.generator_util <= GENERATOR_SATURATED

    def as_dict(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall_s, 2),
            "server_cpu_s": self.server_cpu_s,
            "server_cpu_share": round(self.server_cpu_s / self.wall_s, 3) if self.wall_s else 0.0,
            "server_rss_mib": self.server_rss_mib,
            "postgres_cpu_s": self.postgres_cpu_s,
            "redis_cpu_s": self.redis_cpu_s,
            "generator_cpu_s": self.generator_cpu_s,
            "generator_util": round(self.generator_util, 3),
            "valid": self.valid,
        }


class Meter:
    """``meter.start()`` ... ``window = meter.stop()``: CPU seconds of each party over the interval."""

    def __init__(self, target: Target, fleet: Fleet | None) -> None:
        self.server = server = target.server
        database = target.database
        generator = [os.getpid(), *(fleet.pids if fleet else [])]
        # Only the backends of the bench's own database: other work may share this Postgres.
        # The hub's pooled connections live through the window; a backend that exits inside it
        # is not counted (the pool keeps them, so this is rare).
        backends = procs.pids_with_argument(f" {database} ")
        self._meters: dict[str, procs.CpuMeter | procs.ServiceMeter] = {
            "server": procs.CpuMeter(server.pids()),
            "generator": procs.CpuMeter(generator),
            "postgres": procs.CpuMeter(backends),
            "redis": procs.ServiceMeter("redis-server"),
        }
        self._t0 = 0.0

    def start(self) -> Meter:
        for meter in self._meters.values():
            meter.start()
        self._t0 = time.monotonic()
        return self

    def stop(self) -> Window:
        wall = time.monotonic() - self._t0
        used = {name: meter.stop() for name, meter in self._meters.items()}
        return Window(
            wall_s=wall,
            server_cpu_s=used["server"],
            generator_cpu_s=used["generator"],
            postgres_cpu_s=used["postgres"],
            redis_cpu_s=used["redis"],
            server_rss_mib=round(self.server.rss() / 2**20, 1),
        )


def http_report(sent: Sequence[Sent], wall_s: float) -> dict[str, Any]:
    statuses = Counter(s.status for s in sent)
    return {
        "callbacks": len(sent),
        "callbacks_per_s": round(len(sent) / wall_s, 1) if wall_s else 0.0,
        "errors": sum(n for status, n in statuses.items() if status != 200),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "http": summarize(s.http_ns for s in sent).as_dict(),
    }


def delivery_report(sent: Sequence[Sent], got: Collected, wall_s: float) -> dict[str, Any]:
    """Callback-to-dashboard latency per delivery and per update (its last subscriber), and loss.

    A socket may legitimately skip an intermediate version (latest wins); it is lost only if it
    did not end on the agent's last version.
    """
    send_at = {(s.agent_id, s.version): s.send_ns for s in sent if s.version}
    per_delivery: list[int] = []
    last: dict[tuple[str, int], int] = {}
    for agent_id, version, received in got.deliveries:
        sent_ns = send_at.get((agent_id, version))
        if sent_ns is None:
            continue  # a snapshot on subscribe, or a version from before this window
        latency = received - sent_ns
        per_delivery.append(latency)
        key = (agent_id, version)
        if latency > last.get(key, -1):
            last[key] = latency
    subscribers = Counter(agent_id for agent_id, _ in got.finals)
    expected = sum(subscribers[a] for a, _ in send_at)
    finals = final_versions(sent)
    lost = sum(1 for agent_id, version in got.finals if version < finals.get(agent_id, 0))
    return {
        "deliveries": len(per_delivery),
        "deliveries_per_s": round(len(per_delivery) / wall_s, 1) if wall_s else 0.0,
        "skipped_intermediate": max(0, expected - len(per_delivery)),
        "lost_sockets": lost,
        "close_codes": {str(k): v for k, v in got.close_codes.items()},
        "delivery": summarize(per_delivery).as_dict(),
        "last_subscriber": summarize(last.values()).as_dict(),
    }
