"""Every way Postgres says "not now" is a 503 with Retry-After, or a 4503 frame on a socket that stays
open; never a 500 or an undocumented close code. On a private server, never the shared one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.runtime.schema import upgrade_database
from hub.settings import Settings
from persistence import make_engine
from tests.support.live import live_hub
from tests.support.postgres_server import PostgresServer
from tests.support.ws import next_frame, next_status, open_socket


@pytest.fixture
async def private_postgres() -> AsyncIterator[PostgresServer]:
    async with PostgresServer() as server:
        engine = make_engine(server.url, pool_size=1)
        try:
            await upgrade_database(engine)
        finally:
            await engine.dispose()
        yield server


async def test_a_postgres_shutting_down_answers_503_and_4503_and_sockets_stay_open(
    settings: Settings, clean_db: AsyncEngine, private_postgres: PostgresServer
) -> None:
    async with live_hub(settings, database_url=private_postgres.url, db_pool_size=2, ping_interval=0.5) as (
        base,
        _,
        api,
    ):
        agent_id, job_id = await api.new_job()
        other_agent, _ = await api.new_job()
        async with open_socket(base, "/api/ws") as dashboard:
            await dashboard.send(json.dumps({"type": "subscribe", "agentIds": [agent_id]}))
            await next_status(dashboard)

            # A session held open keeps a smart shutdown waiting: meanwhile every new connection is
            # refused with 57P03 "the database system is shutting down". The hub's pooled connections
            # are ended too, so it has to connect anew.
            holder = await asyncpg.connect(host="127.0.0.1", port=private_postgres.port, user="postgres")
            try:
                await private_postgres.begin_smart_shutdown()
                await holder.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )
                for _ in range(3):  # a terminated pooled connection first, then refused connects
                    callback = await api.callback({"job_id": job_id, "type": "heartbeat"})
                    assert callback.status_code == 503, callback.text
                    assert callback.headers["Retry-After"] == "5"
                    read = await api.status(agent_id)
                    assert read.status_code == 503, read.text
                    assert read.headers["Retry-After"] == "5"

                await dashboard.send(json.dumps({"type": "subscribe", "agentIds": [other_agent]}))
                error = await next_frame(dashboard, "error")
                assert (error["agentId"], error["code"]) == (other_agent, 4503)

                async with open_socket(base, f"/api/agents/{agent_id}/instance/ws") as single:
                    error = await next_frame(single, "error")
                    assert (error["agentId"], error["code"]) == (agent_id, 4503)
                    await next_frame(single, "ping")  # still open

                await next_frame(dashboard, "ping")  # still open too
            finally:
                await holder.close()
