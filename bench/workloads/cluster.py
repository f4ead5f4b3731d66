"""The realistic workload (10 dashboards on each agent, heartbeats at the realistic rates) on the shared
Redis and then on a private Redis Cluster of 3 primaries and 3 replicas, in one run, same agents."""

from __future__ import annotations

from typing import Any

from bench.runner import Run
from bench.workloads.push import open_sockets, push_step


async def run(run: Run) -> dict[str, Any]:
    # The cluster the test suite starts (redis-server and redis-cli on free ports, torn down): the bench
    # runs from a checkout, and one way of building a throwaway cluster is enough.
    from tests.support.redis_cluster import LocalCluster

    scale = run.scale
    result: dict[str, Any] = {"sockets": scale.agents * scale.per_agent, "agents": scale.agents}
    async with LocalCluster() as cluster:
        result["shards"] = len(await cluster.primaries())
        for broker, nodes in (("redis", None), ("cluster", cluster.seeds)):
            async with run.hub(agents=scale.agents, redis_cluster_nodes=nodes) as target:
                jobs = run.jobs[: scale.agents]
                await open_sockets(run, target, [j.agent_id for j in jobs for _ in range(scale.per_agent)])
                steps = [await push_step(run, target, jobs, rate, scale.step_s) for rate in scale.realistic_rates]
            result[broker] = {"steps": steps}
    return result
