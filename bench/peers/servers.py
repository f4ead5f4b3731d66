"""Starting a peer: its own database (one table), its venv's uvicorn, pinned like the hub."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import asyncpg

from bench.httpclient import HttpPool
from bench.peers.venvs import HERE, ensure
from bench.sender import Job
from bench.services import REDIS_URL, SECRETS, Database, ServerProcess, free_port
from bench.target import Target

SCHEMA = "CREATE TABLE peer_agents (id text PRIMARY KEY, version bigint NOT NULL, heartbeat_at timestamptz)"
APPS = {"litestar": "litestar_peer:app", "django": "django_peer.asgi:application"}
NAIVE_POLLER = "naive poller"


@asynccontextmanager
async def peer_target(peer: str, results: Path, *, name: str = "") -> AsyncIterator[Target]:
    """A peer's server on a database of its own; ``name`` labels it in results (default "<peer> peer")."""
    log_path = results / "logs" / f"{name.replace(' ', '-') if name else peer}.log"
    name = name or f"{peer} peer"
    python = ensure(peer)
    async with Database(f"peer_{peer}") as database:
        conn = await asyncpg.connect(database.dsn)
        try:
            await conn.execute(SCHEMA)
        finally:
            await conn.close()

        async def make_agents(_pool: HttpPool, count: int) -> list[Job]:
            ids = [str(uuid.uuid4()) for _ in range(count)]
            conn = await asyncpg.connect(database.dsn)
            try:
                await conn.executemany(
                    "INSERT INTO peer_agents (id, version, heartbeat_at) VALUES ($1, 1, now())", [(i,) for i in ids]
                )
            finally:
                await conn.close()
            return [Job(i, i) for i in ids]

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "PYTHON"))}
        env.update(
            PEER_DSN=database.dsn,
            PEER_REDIS_URL=REDIS_URL,
            PEER_WEBHOOK_SECRET=SECRETS.webhook,
            PEER_JWT_SECRET=SECRETS.jwt,
            PEER_PREFIX=f"bench-peer-{uuid.uuid4().hex[:8]}:",
        )
        # Same server stack and settings as `status-hub serve`: uvicorn on uvloop and httptools (the
        # peers' requirements install both, uvicorn picks them up), no permessage-deflate.
        argv = [str(python), "-m", "uvicorn", APPS[peer], "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--ws-per-message-deflate", "false", "--log-level", "warning"]
        server = ServerProcess(name=name, argv=argv, env=env, port=port, cwd=HERE, log_path=log_path)
        await server.start()
        try:
            yield Target(name=name, server=server, make_agents=make_agents, database=database.name)
        finally:
            server.stop()


def naive_poller(results: Path) -> AbstractAsyncContextManager[Target]:
    """The polling baseline: the Litestar peer's app, whose GET of an agent's instance is one SELECT."""
    return peer_target("litestar", results, name=NAIVE_POLLER)
