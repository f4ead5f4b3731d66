"""Latency summaries: percentiles over nanosecond samples, reported in milliseconds."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Latency:
    count: int
    mean_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def brief(self) -> str:
        if not self.count:
            return "no samples"
        return f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, max {self.max_ms:.1f} ms (n={self.count})"


def percentile(ordered: list[int], fraction: float) -> int:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return 0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(samples_ns: Iterable[int]) -> Latency:
    ordered = sorted(samples_ns)
    if not ordered:
        return Latency(0, 0.0, 0.0, 0.0, 0.0)
    to_ms = 1e-6
    return Latency(
        count=len(ordered),
        mean_ms=round(sum(ordered) / len(ordered) * to_ms, 2),
        p50_ms=round(percentile(ordered, 0.50) * to_ms, 2),
        p99_ms=round(percentile(ordered, 0.99) * to_ms, 2),
        max_ms=round(ordered[-1] * to_ms, 2),
    )
