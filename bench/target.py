"""What a workload runs against: a server, its agents, and how to reach them.

The hub makes its agents through its admin API; a peer's agents are rows the bench seeds.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

import jwt
import msgspec

from bench.httpclient import HttpPool
from bench.sender import Job
from bench.services import SECRETS, ServerProcess

OWNER = "bench-owner"


def dashboard_token(owner: str = OWNER) -> str:
    now = int(time.time())
    return jwt.encode({"sub": owner, "iat": now, "exp": now + 6 * 3600}, SECRETS.jwt, algorithm="HS256")


class AgentMaker(Protocol):
    # Positional-only: callers pass both by position, so a maker may name them as it likes.
    async def __call__(self, pool: HttpPool, count: int, /) -> list[Job]: ...


@dataclass(slots=True)
class Target:
    name: str
    server: ServerProcess
    make_agents: AgentMaker
    database: str  # the Postgres database it writes to
    jobs: list[Job] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}"

    async def ensure_agents(self, pool: HttpPool, count: int) -> list[Job]:
        if len(self.jobs) < count:
            self.jobs.extend(await self.make_agents(pool, count - len(self.jobs)))
        return self.jobs[:count]


class _Created(msgspec.Struct):
    id: str


class _Provisioned(msgspec.Struct):
    jobId: str


async def hub_agents(pool: HttpPool, count: int) -> list[Job]:
    """Create agents and provision each through the admin API (a queued job, version 1)."""
    headers = {"Authorization": f"Bearer {SECRETS.admin}", "Content-Type": "application/json"}
    limit = asyncio.Semaphore(32)

    async def one(i: int) -> Job:
        async with limit:
            body = msgspec.json.encode({"ownerId": OWNER, "name": f"bench-agent-{i}"})
            created = await pool.request("POST", "/api/agents", body, headers)
            if created.status != 201:
                raise RuntimeError(f"POST /api/agents answered {created.status}: {created.body[:200]!r}.")
            agent_id = msgspec.json.decode(created.body, type=_Created).id
            provisioned = await pool.request("POST", f"/api/agents/{agent_id}/provision", b"{}", headers)
            if provisioned.status != 201:
                raise RuntimeError(f"provision answered {provisioned.status}: {provisioned.body[:200]!r}.")
            return Job(agent_id, msgspec.json.decode(provisioned.body, type=_Provisioned).jobId)

    return list(await asyncio.gather(*(one(i) for i in range(count))))
