"""The provisioning timeline: step times stored as steps change, expected durations from the owner's
past runs, the stall watch (stalled, resumed, presumed lost) and the agent's history."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import event, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from hub.domain import callback_rules as callbacks
from hub.domain.stall_rules import Silences, settle
from hub.runtime.stall_watch import watch_once
from hub.settings import Settings
from persistence import make_engine, queries
from persistence.callback_store import expected_seconds
from persistence.models import AgentInstance, Base, CallbackEvent, StepDuration, utcnow
from persistence.silences import silent_jobs
from tests.support.api import Api, token_for
from tests.support.live import embedded_settings, live_hub
from tests.support.process import hub_environment, hub_process
from tests.support.scrape import metrics_of, value
from tests.support.ws import next_status, open_socket

KEYS = ("queued", "creating_server", "installing_dependencies", "configuring_agent", "running")
# Short silences, so a test sees every change of the stall watch within seconds.
SILENCES = {"stall_after": 2, "heartbeat_timeout": 2, "fail_after": 4}
WATCH = 10.0  # seconds: a silence of 2-4 s, found within a 1 s pass, with a wide margin


def times(status: dict[str, Any]) -> dict[str, tuple[str | None, str | None]]:
    return {step["key"]: (step["startedAt"], step["completedAt"]) for step in status["steps"]}


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_step_times_follow_the_callbacks_and_a_skipped_step_starts_and_ends_at_once(api: Api) -> None:
    agent_id, job_id = await api.new_job()
    first = (await api.status(agent_id)).json()
    assert first["steps"][0]["startedAt"] is not None
    assert times(first) == {"queued": (first["steps"][0]["startedAt"], None)} | {key: (None, None) for key in KEYS[1:]}

    seen = [first]
    for body in (
        {"status": "provisioning"},
        {"status": "provisioning", "step": "vm_created"},
        # ansible_started never comes: Configuring Agent is skipped.
        {"status": "provisioning", "step": "ansible_complete"},
        {"status": "running"},
    ):
        response = await api.callback({"job_id": job_id, **body})
        assert response.json()["applied"] is True
        seen.append((await api.status(agent_id)).json())

    final = times(seen[-1])
    assert all(started is not None and completed is not None for started, completed in final.values())
    # Each step ends when the next begins, and times never go backwards.
    ordered = [moment(value) for key in KEYS for value in final[key] if value is not None]
    assert ordered == sorted(ordered)
    for earlier, later in itertools.pairwise(KEYS):
        assert final[earlier][1] == final[later][0]
    skipped_started, skipped_completed = final["configuring_agent"]
    assert skipped_started == skipped_completed
    # Times are written once: each later status keeps every time an earlier one had.
    for before, after in itertools.pairwise(seen):
        for key, (started, completed) in times(before).items():
            assert times(after)[key][0] == started or started is None
            assert times(after)[key][1] == completed or completed is None
    # The active step has a start and no end.
    provisioning = seen[2]
    assert [step["state"] for step in provisioning["steps"]] == [
        "completed",
        "completed",
        "active",
        "pending",
        "pending",
    ]
    assert times(provisioning)["installing_dependencies"][1] is None


async def test_a_failure_ends_its_step_and_the_steps_it_skipped(api: Api) -> None:
    agent_id, job_id = await api.new_job()
    await api.callback({"job_id": job_id, "status": "provisioning"})
    await api.callback({"job_id": job_id, "status": "failed", "step": "ansible_started", "error": "boom"})
    status = (await api.status(agent_id)).json()
    assert [step["state"] for step in status["steps"]] == ["completed", "completed", "completed", "error", "pending"]
    steps = times(status)
    failed_at = steps["configuring_agent"][0]
    assert failed_at is not None and steps["configuring_agent"] == (failed_at, failed_at)
    assert steps["installing_dependencies"] == (failed_at, failed_at)  # skipped on the way to the failure
    assert steps["running"] == (None, None)


async def test_only_steps_run_from_start_to_end_become_samples(api: Api, clean_db: AsyncEngine) -> None:
    agent_id, job_id = await api.new_job("owner-samples")
    for body in (
        {"status": "provisioning"},
        {"status": "provisioning", "step": "ansible_started"},  # Installing Dependencies skipped
        {"status": "failed", "error": "no"},  # Configuring Agent failed
    ):
        await api.callback({"job_id": job_id, **body})
    status = (await api.status(agent_id, "owner-samples")).json()
    async with clean_db.connect() as connection:
        rows = (await connection.execute(select(StepDuration.step, StepDuration.seconds, StepDuration.owner_id))).all()
    steps = times(status)
    expected = {
        key: (moment(steps[key][1] or "") - moment(steps[key][0] or "")).total_seconds()
        for key in ("queued", "creating_server")
    }
    assert {row.step: pytest.approx(row.seconds, abs=1e-6) for row in rows} == expected
    assert {row.owner_id for row in rows} == {"owner-samples"}


async def _add_samples(engine: AsyncEngine, owner_id: str, step: str, seconds: list[float]) -> None:
    """Past runs of ``step`` by ``owner_id``, one a minute, the last of ``seconds`` the newest."""
    async with engine.begin() as connection:
        instance_id = await _any_instance(connection)
        start = datetime.now(UTC) - timedelta(minutes=len(seconds))
        await connection.execute(
            insert(StepDuration),
            [
                {
                    "owner_id": owner_id,
                    "step": step,
                    "instance_id": instance_id,
                    "seconds": value,
                    "completed_at": start + timedelta(minutes=index),
                }
                for index, value in enumerate(seconds)
            ],
        )


async def _any_instance(connection: Any) -> uuid.UUID:
    found: uuid.UUID = (await connection.execute(text("SELECT id FROM agent_instances LIMIT 1"))).scalar_one()
    return found


async def test_the_expected_duration_is_the_median_of_the_owners_last_fifty_runs(
    api: Api, clean_db: AsyncEngine
) -> None:
    first_agent, _ = await api.new_job("owner-median")
    assert (await api.status(first_agent, "owner-median")).json()["steps"][0]["expectedSeconds"] is None
    # 60 runs: the 10 oldest took 1000 s, the last 50 took 1..50 s (median 25.5); another owner's and
    # another step's runs do not count.
    await _add_samples(clean_db, "owner-median", "queued", [1000.0] * 10 + [float(n) for n in range(50, 0, -1)])
    await _add_samples(clean_db, "someone-else", "queued", [7.0] * 50)
    await _add_samples(clean_db, "owner-median", "creating_server", [3.0] * 5)

    agent_id, job_id = await api.new_job("owner-median")
    queued = (await api.status(agent_id, "owner-median")).json()["steps"][0]
    assert queued["expectedSeconds"] == pytest.approx(25.5)
    await api.callback({"job_id": job_id, "status": "provisioning"})
    steps = (await api.status(agent_id, "owner-median")).json()["steps"]
    assert steps[1]["expectedSeconds"] == pytest.approx(3.0)  # exactly five samples: enough
    assert steps[0]["expectedSeconds"] == pytest.approx(25.5)  # kept from when it started
    assert steps[2]["expectedSeconds"] is None  # not started yet


async def test_the_embedded_database_computes_the_same_median(tmp_path: Any) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}")
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        async with AsyncSession(engine) as session, session.begin():
            agent = await queries.create_agent(session, owner_id="o", name="a")
            _job, instance = await queries.start_provisioning(session, agent, job_id="j", first_step="queued")
            rows = [
                {"owner_id": "o", "step": "queued", "instance_id": instance.id, "seconds": value, "completed_at": now}
                for value, now in ((4.0, datetime.now(UTC)), (1.0, datetime.now(UTC)), (9.0, datetime.now(UTC)))
            ]
            connection = await session.connection()
            await connection.execute(insert(StepDuration), [*rows, {**rows[0], "seconds": 2.0}])
            assert await expected_seconds(connection, "o", "queued") is None  # four samples
            await connection.execute(insert(StepDuration), [{**rows[0], "seconds": 5.0}])
            assert await expected_seconds(connection, "o", "queued") == pytest.approx(4.0)
    finally:
        await engine.dispose()


async def test_a_socket_sees_a_stall_its_clearing_and_the_timeout_failure(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    async with live_hub(settings, **SILENCES) as (base, _hub, api):
        agent_id, job_id = await api.new_job()
        _, before = await metrics_of(api.client)
        async with open_socket(base, f"/api/agents/{agent_id}/instance/ws") as ws:
            pending = await next_status(ws)
            assert pending["version"] == 1 and pending["stalledSince"] is None

            stalled = await next_status(ws, WATCH)
            assert stalled["version"] == 2 and stalled["status"] == "pending"
            # Stalled since the workflow's last word: here, the provisioning itself.
            assert stalled["stalledSince"] == pending["steps"][0]["startedAt"]

            # Any accepted word clears it, even one that changes nothing else.
            reply = (await api.callback({"job_id": job_id, "status": "queued"})).json()
            assert reply == {"received": True, "applied": True, "version": 3}
            resumed = await next_status(ws)
            assert (resumed["version"], resumed["stalledSince"], resumed["status"]) == (3, None, "pending")

            await api.callback({"job_id": job_id, "status": "provisioning"})
            provisioning = await next_status(ws)
            assert provisioning["version"] == 4 and provisioning["stalledSince"] is None

            stalled_again = await next_status(ws, WATCH)
            assert stalled_again["version"] == 5 and stalled_again["stalledSince"] is not None
            failed = await next_status(ws, WATCH)
        assert failed["version"] == 6
        assert failed["status"] == "failed" and failed["stalledSince"] is None
        assert failed["error"] == "No callback from the provisioning workflow for 4 seconds; it is presumed lost."
        # Failed as a workflow's failure without a step would leave it (shown at Installing Dependencies).
        assert [step["state"] for step in failed["steps"]] == ["completed", "completed", "error", "pending", "pending"]
        assert failed["steps"][2]["completedAt"] is not None
        # The job failed too, and a late callback changes nothing.
        late = (await api.callback({"job_id": job_id, "status": "running"})).json()
        assert late["applied"] is False
        _, after = await metrics_of(api.client)
        for outcome, count in {"stalled": 2, "presumed_lost": 1}.items():
            counted = value(after, "statushub_silent_workflows_total", outcome=outcome)
            assert counted - value(before, "statushub_silent_workflows_total", outcome=outcome) == count, outcome

        history = (await _history(api.client, agent_id)).json()
    kinds = [(item["kind"], item["status"], item["version"]) for item in history["events"]]
    assert kinds == [
        ("status", "running", 6),  # the late callback, logged and not applied
        ("timed_out", "failed", 6),
        ("stalled", "provisioning", 5),
        ("status", "provisioning", 4),
        ("status", "queued", 3),
        ("resumed", "pending", 3),
        ("stalled", "pending", 2),
    ]
    assert history["events"][1]["error"] == failed["error"]
    assert [item["applied"] for item in history["events"]] == [False, True, True, True, True, True, True]
    # The time until the failure is no sample of how long Creating Server takes.
    async with clean_db.connect() as connection:
        sampled = (await connection.execute(select(StepDuration.step))).scalars().all()
    assert sampled == ["queued"]


async def test_a_running_agent_that_stops_heartbeating_is_stalled_until_it_heartbeats(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    async with live_hub(settings, **SILENCES) as (base, _hub, api):
        agent_id, job_id = await api.new_job()
        await api.callback({"job_id": job_id, "status": "running"})
        version = await api.heartbeat(job_id)
        async with open_socket(base, f"/api/agents/{agent_id}/instance/ws") as ws:
            beating = await next_status(ws)
            assert beating["version"] == version and beating["stalledSince"] is None
            stalled = await next_status(ws, WATCH)
            assert stalled["version"] == version + 1 and stalled["status"] == "running"
            assert stalled["stalledSince"] == beating["lastHeartbeatAt"]
            assert await api.heartbeat(job_id) == version + 2
            back = await next_status(ws)
        assert back["stalledSince"] is None and back["lastHeartbeatAt"] > beating["lastHeartbeatAt"]
        assert back["status"] == "running"


async def test_two_replicas_never_stall_or_fail_an_instance_twice(settings: Settings, clean_db: AsyncEngine) -> None:
    env = hub_environment(settings, HUB_STALL_AFTER="2", HUB_HEARTBEAT_TIMEOUT="2", HUB_FAIL_AFTER="4")
    async with (
        hub_process(env) as first,
        hub_process(env) as second,
        httpx.AsyncClient(base_url=first.base) as client,
        httpx.AsyncClient(base_url=second.base) as other,
    ):
        api = Api(client)
        agents = [await api.new_job() for _ in range(12)]
        async with open_socket(second.base, "/api/ws") as ws:
            await ws.send(json.dumps({"type": "subscribe", "agentIds": [agent_id for agent_id, _ in agents]}))
            failed: set[str] = set()
            async with asyncio.timeout(30):
                while len(failed) < len(agents):
                    status = await next_status(ws, 30)
                    if status["status"] == "failed":
                        failed.add(status["agentId"])
        # Each change counted once, by the replica that made it.
        scraped = [(await metrics_of(client))[1], (await metrics_of(other))[1]]
        for outcome in ("stalled", "presumed_lost"):
            assert sum(value(samples, "statushub_silent_workflows_total", outcome=outcome) for samples in scraped) == 12
    async with clean_db.connect() as connection:
        rows = (await connection.execute(select(CallbackEvent.job_id, CallbackEvent.kind, CallbackEvent.version))).all()
    for _agent_id, job_id in agents:
        mine = sorted((row.version, row.kind) for row in rows if row.job_id == job_id)
        assert mine == [(2, "stalled"), (3, "timed_out")], job_id


async def test_the_history_pages_newest_first_with_a_cursor(api: Api) -> None:
    agent_id, job_id = await api.new_job()
    for body in (
        {"status": "provisioning"},
        {"status": "provisioning", "step": "vm_created"},
        {"status": "provisioning", "step": "vm_created"},  # not applied: logged all the same
        {"status": "provisioning", "step": "network_configured"},
        {"status": "provisioning", "step": "ansible_started"},
    ):
        await api.callback({"job_id": job_id, **body}, delivery=f"d-{uuid.uuid4().hex}")
    await api.heartbeat(job_id)  # heartbeats are liveness, not history
    # A later provisioning of the same agent is part of its history too; another agent's is not.
    await api.callback({"job_id": job_id, "status": "failed", "error": "disk full"})
    second_job = (await api.provision(agent_id))["jobId"]
    await api.callback({"job_id": second_job, "status": "provisioning"})
    _, other_job = await api.new_job()
    await api.callback({"job_id": other_job, "status": "provisioning"})

    whole = (await _history(api.client, agent_id, limit=200)).json()
    assert whole["next"] is None
    events = whole["events"]
    assert [(e["jobId"], e["status"], e["step"]) for e in events] == [
        (second_job, "provisioning", None),
        (job_id, "failed", None),
        (job_id, "provisioning", "ansible_started"),
        (job_id, "provisioning", "network_configured"),
        (job_id, "provisioning", "vm_created"),
        (job_id, "provisioning", "vm_created"),
        (job_id, "provisioning", None),
    ]
    assert [e["applied"] for e in events] == [True, True, True, True, False, True, True]
    assert events[1]["error"] == "disk full" and events[0]["error"] is None
    assert all(e["deliveryId"].startswith("d-") for e in events[2:])
    assert [int(e["id"]) for e in events] == sorted((int(e["id"]) for e in events), reverse=True)
    assert all(moment(a["at"]) >= moment(b["at"]) for a, b in itertools.pairwise(events))

    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        page = (await _history(api.client, agent_id, limit=3, before=cursor)).json()
        pages.append(page["events"])
        cursor = page["next"]
        if cursor is None:
            break
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [e for page in pages for e in page] == events
    assert len((await _history(api.client, agent_id)).json()["events"]) == 7  # the default limit is 50


async def test_the_history_is_the_owners_alone_and_refuses_bad_paging(api: Api) -> None:
    agent_id, _job_id = await api.new_job()
    no_token = await api.client.get(f"/api/agents/{agent_id}/events")
    assert no_token.status_code == 401
    assert (await _history(api.client, agent_id, owner="owner-2")).status_code == 403
    assert (await _history(api.client, str(uuid.uuid4()))).status_code == 404
    assert (await _history(api.client, "not-an-agent")).status_code == 404
    for limit in ("0", "201", "ten", "-1", "1.5", ""):
        response = await _history(api.client, agent_id, limit=limit)
        assert response.status_code == 400, limit
        assert response.json()["extra"] == {"field": "limit"}
        assert "limit" in response.json()["detail"]
    for before in ("0", "abc", "-5", "1" * 20):
        response = await _history(api.client, agent_id, before=before)
        assert response.status_code == 400, before
        assert response.json()["extra"] == {"field": "before"}
    # Any cursor past the newest event starts from the newest.
    assert (await _history(api.client, agent_id, before="9" * 19)).status_code == 200


async def _history(
    client: httpx.AsyncClient,
    agent_id: str,
    *,
    owner: str = "owner-1",
    limit: int | str | None = None,
    before: str | None = None,
) -> httpx.Response:
    params: dict[str, Any] = {}
    if limit is not None:
        params["limit"] = limit
    if before is not None:
        params["before"] = before
    headers = {"Authorization": f"Bearer {token_for(owner)}"}
    return await client.get(f"/api/agents/{agent_id}/events", params=params, headers=headers)


async def _watch_plan(engine: AsyncEngine, cutoff: datetime, *, analyze: bool = False) -> str:
    """Postgres's plan for the stall watch's query, every cutoff at ``cutoff`` (run, with ``analyze``)."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        captured.append((statement, parameters))

    sync_engine = engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", capture)
    try:
        async with engine.connect() as connection:
            await silent_jobs(connection, stall_cutoff=cutoff, fail_cutoff=cutoff, heartbeat_cutoff=cutoff, batch=10)
    finally:
        event.remove(sync_engine, "before_cursor_execute", capture)
    (statement, parameters), *_ = captured
    explain = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " if analyze else "EXPLAIN "
    async with engine.connect() as connection:
        await connection.execute(text("SET enable_seqscan = off"))  # a small table would be scanned
        raw = await connection.get_raw_connection()
        rows = await raw.driver_connection.fetch(explain + statement, *parameters)  # type: ignore[union-attr]
    return "\n".join(row[0] for row in rows)


async def test_the_stall_watch_reads_its_candidates_through_the_partial_indexes(clean_db: AsyncEngine) -> None:
    plan = await _watch_plan(clean_db, datetime.now(UTC))
    assert "ix_agent_instances_silent_provisioning" in plan, plan
    assert "ix_agent_instances_silent_running" in plan, plan


async def test_a_running_agent_provisioned_again_leaves_the_watchs_index(api: Api, clean_db: AsyncEngine) -> None:
    # A fleet provisioned again every day must not leave each old running instance, heartbeats and all,
    # in the index that every pass of the watch reads.
    agent_id, job_id = await api.new_job()
    jobs = [job_id]
    for run in range(4):
        await api.callback({"job_id": jobs[-1], "status": "running"})
        await api.heartbeat(jobs[-1])
        if run < 3:
            jobs.append((await api.provision(agent_id))["jobId"])
    async with clean_db.connect() as connection:
        rows = (
            await connection.execute(
                select(AgentInstance.job_id, AgentInstance.created_at, AgentInstance.superseded_at).order_by(
                    AgentInstance.version
                )
            )
        ).all()
    assert [row.job_id for row in rows] == jobs
    # Each replaced when the next one was made; the newest not.
    assert [row.superseded_at for row in rows] == [row.created_at for row in rows[1:]] + [None]

    plan = await _watch_plan(clean_db, datetime.now(UTC) + timedelta(days=1), analyze=True)
    # The scan of the running index and its details, up to the next node.
    lines = plan.splitlines()
    start = next(i for i, line in enumerate(lines) if "ix_agent_instances_silent_running" in line)
    scan = list(itertools.takewhile(lambda line: "->" not in line, lines[start + 1 :]))
    # The newest instance alone; the three it replaced are not in the index to be read and dropped.
    assert "(actual rows=1 " in lines[start], plan
    assert not [line for line in scan if "Rows Removed" in line], plan


async def test_the_embedded_default_watches_for_stalls_too(tmp_path: Any) -> None:
    embedded = await embedded_settings(tmp_path)
    async with live_hub(embedded, **SILENCES) as (base, _hub, api):
        agent_id, job_id = await api.new_job()
        async with open_socket(base, f"/api/agents/{agent_id}/instance/ws") as ws:
            assert (await next_status(ws))["stalledSince"] is None
            stalled = await next_status(ws, WATCH)
            assert stalled["stalledSince"] is not None and stalled["version"] == 2
            await api.callback({"job_id": job_id, "status": "provisioning"})
            assert (await next_status(ws))["stalledSince"] is None
            await next_status(ws, WATCH)  # stalled again
            failed = await next_status(ws, WATCH)
        assert failed["status"] == "failed" and failed["version"] == 5


async def _quiet_for(engine: AsyncEngine, job_id: str, seconds: int) -> None:
    """Make the job's workflow look silent for ``seconds`` (its last word and last change that long ago);
    under the session hub's own limits (300 s), so only the test's watch acts on it."""
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE agent_instances SET last_callback_at = now() - make_interval(secs => :s), "
                "updated_at = now() - make_interval(secs => :s) WHERE job_id = :job"
            ),
            {"s": seconds, "job": job_id},
        )


async def _blocked_on_a_lock(engine: AsyncEngine) -> None:
    """Return once some session of this database waits for a lock (bounded)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    async with asyncio.timeout(10), engine.connect() as connection:
        while not await connection.scalar(query):
            await connection.rollback()
            await asyncio.sleep(0.01)  # polling a condition with no event to await, within the bound


QUICK = Silences(stall_after=60, heartbeat_timeout=60, fail_after=90)


async def test_a_callback_holding_the_jobs_lock_wins_over_the_watch(api: Api, clean_db: AsyncEngine) -> None:
    agent_id, job_id = await api.new_job()
    await _quiet_for(clean_db, job_id, 70)
    body, document = callbacks.parse(json.dumps({"job_id": job_id, "status": "provisioning"}).encode())
    async with clean_db.connect() as callback, clean_db.connect() as watch:
        await callback.begin()
        await callbacks.apply(callback, body, document, None)

        async def watch_it() -> Any:
            async with watch.begin():
                return await settle(watch, job_id, QUICK, utcnow(), utcnow() - timedelta(days=1))

        watching = asyncio.create_task(watch_it())
        await _blocked_on_a_lock(clean_db)
        await callback.commit()
        assert await watching is None  # it read the row the callback left: heard from just now
    status = (await api.status(agent_id)).json()
    assert (status["version"], status["status"], status["stalledSince"]) == (2, "provisioning", None)


async def test_a_callback_waiting_for_the_watch_clears_the_stall_it_made(api: Api, clean_db: AsyncEngine) -> None:
    agent_id, job_id = await api.new_job()
    await _quiet_for(clean_db, job_id, 70)
    async with clean_db.connect() as watch:
        await watch.begin()
        stalled = await settle(watch, job_id, QUICK, utcnow(), utcnow() - timedelta(days=1))
        assert stalled is not None and stalled.stalled_since is not None and stalled.version == 2
        answering = asyncio.create_task(api.callback({"job_id": job_id, "status": "provisioning"}))
        await _blocked_on_a_lock(clean_db)
        await watch.commit()
        reply = (await answering).json()
    assert reply == {"received": True, "applied": True, "version": 3}
    status = (await api.status(agent_id)).json()
    assert (status["status"], status["stalledSince"]) == ("provisioning", None)


async def test_only_silence_the_watch_could_hear_counts(app: Litestar, api: Api, clean_db: AsyncEngine) -> None:
    agent_id, job_id = await api.new_job()
    await _quiet_for(clean_db, job_id, 100)
    hub = app.state.hub
    # Just back from an outage (or just started): 100 s of silence it could not hear are no silence.
    assert await watch_once(hub, QUICK, listening_since=utcnow()) == 0
    assert (await api.status(agent_id)).json()["version"] == 1
    # Listening all along: past HUB_FAIL_AFTER (90 s here), presumed lost.
    assert await watch_once(hub, QUICK, listening_since=utcnow() - timedelta(days=1)) == 1
    status = (await api.status(agent_id)).json()
    assert (status["status"], status["version"]) == ("failed", 2)
    assert status["error"] == "No callback from the provisioning workflow for 90 seconds; it is presumed lost."
