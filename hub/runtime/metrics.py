"""What this process measures of itself, as Prometheus metrics (``GET /metrics``), and the few
figures ``/healthz`` repeats.

Events that happen per socket and per frame (tens of thousands a second in a wide broadcast) are
counted in plain integers and folded into their Prometheus counters by ``refresh``, which also
samples the gauges; everything else is counted where it happens. Each hub has its own registry, so
several hubs in one process (tests) do not share figures. Under ``serve --workers N`` the metrics
are written to a directory shared by the workers (prometheus_client's multiprocess mode, set up by
``serve``) and ``/metrics`` answers their sum.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

log = logging.getLogger(__name__)

# Where prometheus_client's multiprocess mode keeps each worker's figures; ``serve`` sets it.
MULTIPROCESS_DIR_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"
# Seconds between two refreshes of the gauges and the folded counters.
REFRESH_INTERVAL: Final = 2.0
# From a millisecond (a callback on a warm pool) to 10 s (a stalled database or socket).
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CALLBACK_OUTCOMES: Final = (
    "applied",
    "unchanged",
    "duplicate",
    "unauthorized",
    "invalid",
    "not_found",
    "conflict",
    "too_large",
    "unavailable",
    "error",
)


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=False)
        self.callbacks = Counter(
            "statushub_callbacks", "Workflow callbacks answered, by outcome.", ["outcome"], registry=registry
        )
        # Every outcome present from the start, at 0; children looked up once.
        self.callback_outcomes = {outcome: self.callbacks.labels(outcome) for outcome in CALLBACK_OUTCOMES}
        self.callback_duration = Histogram(
            "statushub_callback_duration_seconds",
            "Seconds from a callback's arrival to its answer.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.delivery_lag = Histogram(
            "statushub_delivery_lag_seconds",
            "Seconds from the commit of a change to its frame written to this process's last socket that "
            "gets it; one observation per change per process.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.sockets = Gauge(
            "statushub_sockets", "Open dashboard sockets.", registry=registry, multiprocess_mode="livesum"
        )
        self.subscriptions = Gauge(
            "statushub_subscriptions",
            "Agents whose channel this process watches.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.frames_sent = Counter("statushub_frames_sent", "Status frames written to sockets.", registry=registry)
        self.slow_socket_closes_total = Counter(
            "statushub_slow_socket_closes", "Sockets closed with 4408: a send overran its deadline.", registry=registry
        )
        self.resyncs_total = Counter(
            "statushub_resyncs", "Snapshots re-read from Postgres after a lost subscription.", registry=registry
        )
        self.reconcile_repairs_total = Counter(
            "statushub_reconcile_repairs", "Sockets the reconcile found behind and repaired.", registry=registry
        )
        self.silent_workflows = Counter(
            "statushub_silent_workflows",
            "Workflows the stall watch changed, by outcome: stalled, or failed as presumed lost.",
            ["outcome"],
            registry=registry,
        )
        self.silent_outcomes = {
            outcome: self.silent_workflows.labels(outcome) for outcome in ("stalled", "presumed_lost")
        }
        self.publish_failures_total = Counter(
            "statushub_publish_failures", "Publishes to the broker that failed.", registry=registry
        )
        self.publish_dropped_total = Counter(
            "statushub_publish_dropped",
            "Statuses dropped from a full publish backlog (the reconcile repairs them).",
            registry=registry,
        )
        self.publish_backlog = Gauge(
            "statushub_publish_backlog",
            "Statuses waiting for a publish retry.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.redis_connected = Gauge(
            "statushub_redis_connected",
            "1 while the broker's subscriber connection is up (always 1 on the in-memory broker).",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.db_pool_checked_out = Gauge(
            "statushub_db_pool_checked_out",
            "Database connections in use.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.busy_answers_total = Counter(
            "statushub_busy_answers",
            "503 answers because no database connection came free in time.",
            registry=registry,
        )
        self.http_requests = Counter(
            "statushub_http_requests", "HTTP requests, by route template and status.", ["route", "status"],
            registry=registry,
        )  # fmt: skip
        self.http_request_duration = Histogram(
            "statushub_http_request_duration_seconds",
            "Seconds to answer an HTTP request, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # The children of the two by-route metrics, looked up once per route and status: the label
        # lookup cost as much as the increment and the observation together, on every request.
        self._http_children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        # Folded into frames_sent by refresh(): one increment per frame would cost more than the write.
        self.frames_written = 0
        self._frames_folded = 0

    def observe_http(self, route: str, status: int, seconds: float) -> None:
        children = self._http_children.get((route, status))
        if children is None:
            children = self._http_children[route, status] = (
                self.http_requests.labels(route, str(status)),
                self.http_request_duration.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    # The figures /healthz shows, read back from the registry (this process's own).
    @property
    def publish_failures(self) -> int:
        return self._count("statushub_publish_failures_total")

    @property
    def publish_dropped(self) -> int:
        return self._count("statushub_publish_dropped_total")

    @property
    def slow_socket_closes(self) -> int:
        return self._count("statushub_slow_socket_closes_total")

    @property
    def resyncs(self) -> int:
        return self._count("statushub_resyncs_total")

    @property
    def reconcile_repairs(self) -> int:
        return self._count("statushub_reconcile_repairs_total")

    @property
    def busy_answers(self) -> int:
        return self._count("statushub_busy_answers_total")

    def _count(self, name: str, **labels: str) -> int:
        return int(self.registry.get_sample_value(name, labels) or 0)

    def refresh(
        self, *, sockets: int, subscriptions: int, backlog: int, redis_connected: bool, checked_out: int
    ) -> None:
        """Sample the gauges and fold the per-frame counts into their counter."""
        written = self.frames_written
        if written > self._frames_folded:
            self.frames_sent.inc(written - self._frames_folded)
            self._frames_folded = written
        self.sockets.set(sockets)
        self.subscriptions.set(subscriptions)
        self.publish_backlog.set(backlog)
        self.redis_connected.set(1 if redis_connected else 0)
        self.db_pool_checked_out.set(checked_out)


async def refresh_forever(refresh: Callable[[], None], interval: float = REFRESH_INTERVAL) -> None:
    """Keep the gauges current between scrapes (each worker its own, so a scrape of any one of them
    sums figures at most ``interval`` old)."""
    while True:
        try:
            refresh()
        except Exception:
            log.exception("Refreshing the metrics failed; trying again in %g s.", interval)
        await asyncio.sleep(interval)


def multiprocess_dir() -> Path | None:
    """The workers' shared metrics directory when ``serve --workers N`` set one up, else None."""
    value = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    return Path(value) if value else None


def exposition(metrics: Metrics) -> bytes:
    """The Prometheus text of this process, or of every worker when they share a directory. Gauges
    of workers that died without saying so (killed, crashed) are dropped here."""
    directory = multiprocess_dir()
    if directory is None:
        return generate_latest(metrics.registry)
    _mark_dead_workers(directory)
    registry = CollectorRegistry(auto_describe=False)
    prometheus_multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def mark_worker_gone(pid: int | None = None) -> None:
    """A worker that stops says so, so that its gauges stop counting (its counters still do)."""
    directory = multiprocess_dir()
    if directory is not None:
        prometheus_multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
            os.getpid() if pid is None else pid, path=str(directory)
        )


def _mark_dead_workers(directory: Path) -> None:
    pids: set[int] = set()
    for file in directory.glob("gauge_live*_*.db"):
        suffix = file.stem.rsplit("_", 1)[-1]
        if suffix.isdigit():
            pids.add(int(suffix))
    for pid in pids:
        if not _alive(pid):
            mark_worker_gone(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
