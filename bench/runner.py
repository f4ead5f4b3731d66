"""One bench run: its scale, the shared database and generator fleet, and hubs started on demand."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.fleet import Fleet
from bench.httpclient import HttpPool
from bench.sender import Job
from bench.services import Database, free_port, hub_server
from bench.target import Target, dashboard_token, hub_agents

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True, slots=True)
class Scale:
    """Sizes of every workload; ``quick`` fits CI (< 60 s), ``full`` is the published run."""

    fleet: int = 4
    idle_steps: tuple[int, ...] = (1000, 5000, 10000)
    idle_window_s: float = 25.0  # > HUB_PING_INTERVAL, so the idle pings are in the window
    agents: int = 1000
    per_agent: int = 10
    realistic_rates: tuple[int, ...] = (50, 200, 500)
    step_s: float = 15.0
    worst_widths: tuple[int, ...] = (1000, 10000)
    worst_updates: int = 30
    ingest_rates: tuple[int, ...] = (250, 500, 750, 1000, 1250, 1500, 2000)
    ingest_step_s: float = 6.0
    ingest_workers: tuple[int, ...] = (1, 2)
    fanout_width: int = 1000
    fanout_rate: int = 10
    background_rate: int = 100
    # Polling as the targets state it: 1,000 dashboards over 100 agents, 5 updates/s, a poll every 2 s.
    poll_dashboards: int = 1000
    poll_agents: int = 100
    poll_changes_per_s: float = 5.0
    poll_window_s: float = 30.0  # the mixed windows (polls while changes arrive) and the push side
    poll_cost_window_s: float = 15.0  # the windows that price one poll: all 304, all 200
    peer_width: int = 1000
    peer_rate: int = 20

    @classmethod
    def quick(cls) -> Scale:
        return cls(
            fleet=2,
            idle_steps=(200, 500),
            idle_window_s=1.5,
            agents=50,
            per_agent=10,
            realistic_rates=(50, 200),
            step_s=2.5,
            worst_widths=(500,),
            worst_updates=8,
            ingest_rates=(100, 250),
            ingest_step_s=2.0,
            ingest_workers=(1,),
            fanout_width=300,
            background_rate=50,
            poll_dashboards=200,
            poll_agents=20,
            poll_window_s=4.0,
            poll_cost_window_s=3.0,
            peer_width=200,
            peer_rate=20,
        )

    @classmethod
    def full(cls) -> Scale:
        return cls()

    def override(self, **values: object) -> Scale:
        return dataclasses.replace(self, **values)  # type: ignore[arg-type]


@dataclass(slots=True)
class Run:
    scale: Scale
    database: Database
    fleet: Fleet
    results: Path = RESULTS
    jobs: list[Job] = field(default_factory=list)
    token: str = field(default_factory=dashboard_token)

    @asynccontextmanager
    async def hub(
        self, *, workers: int = 1, agents: int = 0, redis_cluster_nodes: str | None = None
    ) -> AsyncIterator[Target]:
        """A fresh ``status-hub serve`` process on the run's database, with ``agents`` agents; on the
        shared Redis, or on the Redis Cluster of ``redis_cluster_nodes`` (``host:port,...``)."""
        port = free_port()
        log_path = self.results / "logs" / f"hub-{port}.log"
        server = hub_server(self.database, port, log_path, workers=workers, redis_cluster_nodes=redis_cluster_nodes)
        await server.start()
        target = Target(
            name="status-hub", server=server, make_agents=hub_agents, database=self.database.name, jobs=self.jobs
        )
        pool = HttpPool("127.0.0.1", port)
        try:
            await target.ensure_agents(pool, agents)
            yield target
        finally:
            pool.close()
            await self.fleet.close_sockets()
            server.stop()


@asynccontextmanager
async def open_run(scale: Scale) -> AsyncIterator[Run]:
    async with Database("hub") as database, Fleet(scale.fleet) as fleet:
        yield Run(scale=scale, database=database, fleet=fleet)
