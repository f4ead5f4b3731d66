"""``status-hub demo``: a throwaway hub on the embedded default, with agents provisioning live.

It serves the same app as ``status-hub serve`` (SQLite in a temporary directory, the in-memory
broker, secrets generated for the run) and plays workflows against it over HTTP with the workflow
kit, signed callbacks and all, so what the dashboard shows is exactly what a real workflow causes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shlex
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import uvicorn

from hub import process_setup
from hub.cli.simulate import Sender, callback_body, send_all, workflow
from hub.domain.tokens import issue_dashboard_token
from hub.runtime.schema import upgrade_database
from hub.settings import Settings
from persistence import make_engine

log = logging.getLogger(__name__)

OWNER: Final = "demo-owner"
# (name, the callback its workflow fails at); one fails at Ansible so the error state shows too.
AGENTS: Final = (
    ("web-frontend", None),
    ("build-runner", None),
    ("data-pipeline", "ansible_started"),
    ("ml-inference", None),
)
# One more agent whose workflow goes silent midway, as a cancelled job or a lost runner does: the hub
# marks it stalled, and after QUIET_FOR its workflow speaks again and finishes.
QUIET: Final = ("gpu-worker", "ansible_started")
QUIET_FOR: Final = 120.0
SANDBOX: Final = "your-agent"  # provisioned and left for the newcomer to drive with `status-hub simulate`
PAUSE: Final = (1.0, 4.0)  # seconds between one workflow's callbacks
STAGGER: Final = 1.5  # seconds between the agents' starts, so they are at different steps
HEARTBEAT_EVERY: Final = 5.0
BETWEEN_ROUNDS: Final = 20.0
# A step's usual time needs 5 provisionings of the owner that completed it: in the first round each
# agent that succeeds runs twice back to back, so from the second round on every step has one.
FIRST_ROUND_RUNS: Final = 2
# The hub's timeline limits, short so the stall shows within the demo's first minute: silence past
# STALL_AFTER (a heartbeat gap past HEARTBEAT_TIMEOUT for a running agent) is a stall. Nothing is
# failed as lost (0: never), so the sandbox agent waits for the newcomer however long they take.
STALL_AFTER: Final = 20
HEARTBEAT_TIMEOUT: Final = 15
FAIL_AFTER: Final = 0
_START_TIMEOUT: Final = 30.0
# The demo prints its own banner; the hub and uvicorn speak up only for warnings.
LOG_LEVEL: Final = "WARNING"


@dataclass(slots=True)
class DemoAgent:
    id: str
    name: str
    fail_at: str | None
    job_id: str = ""
    heartbeating: bool = False


def run(*, host: str, port: int) -> int:
    process_setup.configure_logging(LOG_LEVEL)
    try:
        # Bound here, not by uvicorn, so a taken port is a clear message and --port 0 a known one.
        listener = socket.create_server((host, port))
    except OSError as exc:
        print(
            f"status-hub demo: cannot listen on {host}:{port} ({exc.strerror}); pass --port (0 picks a free one).",
            file=sys.stderr,
        )
        return 2
    try:
        asyncio.run(_demo(listener, host))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass  # Ctrl-C or SIGTERM: everything was closed on the way out
    finally:
        listener.close()
    print("Demo stopped; its database was deleted.", flush=True)
    return 0


async def _demo(listener: socket.socket, host: str) -> None:
    main = asyncio.current_task()
    if main is not None:
        # SIGTERM ends the demo like Ctrl-C (uvicorn drains first, then re-raises it to us).
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    with tempfile.TemporaryDirectory(prefix="status-hub-demo-") as directory:
        # Stopped at once by Ctrl-C or SIGTERM: a throwaway hub has no dashboards to hand over.
        settings = Settings.build(
            database_url=f"sqlite+aiosqlite:///{directory}/demo.db",
            log_level=LOG_LEVEL,
            drain_delay=0.0,
            drain_seconds=0.5,
            stall_after=STALL_AFTER,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            fail_after=FAIL_AFTER,
        )
        engine = make_engine(settings.database_url, pool_size=1)
        try:
            await upgrade_database(engine)
        finally:
            await engine.dispose()
        config = uvicorn.Config(process_setup.build_app(settings), **process_setup.server_options(settings))
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        driving: asyncio.Task[None] | None = None
        try:
            await _until_started(server, serving)
            shown_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
            base = f"http://{shown_host}:{listener.getsockname()[1]}"
            async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
                admin = {"Authorization": f"Bearer {settings.admin_token}"}
                agents = [
                    DemoAgent(await _create_agent(client, admin, name), name, fail_at) for name, fail_at in AGENTS
                ]
                quiet = DemoAgent(await _create_agent(client, admin, QUIET[0]), QUIET[0], None)
                for agent in [*agents, quiet]:
                    agent.job_id = await _provision(client, admin, agent.id)
                sandbox_job = await _provision(client, admin, await _create_agent(client, admin, SANDBOX))
                print(_banner(base, settings, sandbox_job), flush=True)
                sender = Sender(client, settings.webhook_secret, log=_quiet)
                driving = asyncio.create_task(_drive(client, admin, sender, agents, quiet))
                done, _ = await asyncio.wait({serving, driving}, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # a crashed driver or server ends the demo with its error
        finally:
            server.should_exit = True
            if driving is not None:
                driving.cancel()
            await asyncio.gather(serving, *([driving] if driving else []), return_exceptions=True)


async def _until_started(server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _START_TIMEOUT
    while not server.started:
        if serving.done():
            serving.result()
            raise RuntimeError("The hub stopped while starting; see the log above.")
        if loop.time() > deadline:
            raise RuntimeError(f"The hub did not start within {_START_TIMEOUT:.0f} s.")
        await asyncio.sleep(0.05)  # uvicorn offers a flag, not an event


async def _drive(
    client: httpx.AsyncClient, admin: dict[str, str], sender: Sender, agents: list[DemoAgent], quiet: DemoAgent
) -> None:
    """Round after round: every agent runs its workflow, then rests, then is provisioned again. The
    quiet agent keeps its own pace beside the rounds (see _go_quiet)."""
    rng = random.Random()
    heartbeats = asyncio.create_task(_heartbeats(sender, [*agents, quiet]))
    quieting = asyncio.create_task(_go_quiet(client, admin, sender, quiet, rng))
    try:
        for round_number in range(1, sys.maxsize):
            if round_number > 1:
                print(f"Round {round_number}: provisioning the agents again.", flush=True)
                for agent in agents:
                    agent.heartbeating = False
                    agent.job_id = await _provision(client, admin, agent.id)
            runs = FIRST_ROUND_RUNS if round_number == 1 else 1
            starts = [index * STAGGER + rng.uniform(0.5, 1.5) for index in range(len(agents))]
            await asyncio.gather(
                *(
                    _play_runs(client, admin, sender, agent, rng, start, runs)
                    for agent, start in zip(agents, starts, strict=True)
                )
            )
            await asyncio.sleep(BETWEEN_ROUNDS)
    finally:
        for task in (heartbeats, quieting):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _play_runs(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    sender: Sender,
    agent: DemoAgent,
    rng: random.Random,
    start_after: float,
    runs: int,
) -> None:
    """``runs`` provisionings back to back; a run that fails ends them (an operator would look first)."""
    await asyncio.sleep(start_after)
    for run in range(runs):
        if run:
            agent.heartbeating = False
            agent.job_id = await _provision(client, admin, agent.id)
            await asyncio.sleep(rng.uniform(0.5, 1.5))
        if not await _play(sender, agent, workflow(agent.job_id, fail_at=agent.fail_at), rng) or agent.fail_at:
            return


async def _go_quiet(
    client: httpx.AsyncClient, admin: dict[str, str], sender: Sender, agent: DemoAgent, rng: random.Random
) -> None:
    """Over and over: the workflow reports up to its stop and then nothing for QUIET_FOR (the hub marks
    it stalled after STALL_AFTER), then reports the rest and runs for a round's rest."""
    while True:
        await asyncio.sleep(rng.uniform(2.0, 4.0))
        until_stop = workflow(agent.job_id, stop_after=QUIET[1])
        if await _play(sender, agent, until_stop, rng):
            agent.heartbeating = False  # a cancelled job sends nothing at all
            await asyncio.sleep(QUIET_FOR)
            await _play(sender, agent, workflow(agent.job_id)[len(until_stop) :], rng)
        await asyncio.sleep(BETWEEN_ROUNDS * 2)
        agent.heartbeating = False
        agent.job_id = await _provision(client, admin, agent.id)


async def _play(
    sender: Sender, agent: DemoAgent, callbacks: list[tuple[str, dict[str, Any]]], rng: random.Random
) -> bool:
    """Send ``callbacks`` with the demo's pauses; whether the hub accepted them all."""
    # A workflow job heartbeats from its start; the agent goes on heartbeating once it runs.
    agent.heartbeating = True
    try:
        sent = await send_all(sender, callbacks, pause=lambda: rng.uniform(*PAUSE), log=_quiet)
        ok = sent.accepted
    except httpx.HTTPError as exc:
        log.warning("The demo workflow of %s could not reach the hub: %s", agent.name, exc)
        ok = False
    agent.heartbeating = ok and agent.fail_at is None
    return ok


async def _heartbeats(sender: Sender, agents: list[DemoAgent]) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_EVERY)
        for agent in [a for a in agents if a.heartbeating]:
            try:
                await sender.send(callback_body(agent.job_id, "heartbeat"))
            except httpx.HTTPError as exc:
                log.warning("A demo heartbeat of %s could not reach the hub: %s", agent.name, exc)


async def _create_agent(client: httpx.AsyncClient, admin: dict[str, str], name: str) -> str:
    response = await client.post("/api/agents", json={"ownerId": OWNER, "name": name}, headers=admin)
    return str(_expect_created(response, f"Creating the demo agent {name}")["id"])


async def _provision(client: httpx.AsyncClient, admin: dict[str, str], agent_id: str) -> str:
    response = await client.post(f"/api/agents/{agent_id}/provision", json={}, headers=admin)
    return str(_expect_created(response, f"Provisioning the demo agent {agent_id}")["jobId"])


def _expect_created(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 201:
        raise RuntimeError(f"{what} failed: expected HTTP 201, got {response.status_code} {response.text}")
    body: dict[str, Any] = response.json()
    return body


def _banner(base: str, settings: Settings, sandbox_job: str) -> str:
    token = issue_dashboard_token(settings.jwt_secret, OWNER)
    failing = next(name for name, fail_at in AGENTS if fail_at)
    return "\n".join(
        [
            "",
            f"status-hub demo is running at {base} (throwaway SQLite database, in-memory broker).",
            "",
            "Open the dashboard:",
            f"  {base}/#token={token}",
            "",
            f"{len(AGENTS)} agents are provisioning now ({failing} fails at Ansible on purpose); "
            f"a new round starts about {BETWEEN_ROUNDS:.0f} s after each one ends. From the second round"
            " on, each step shows how long it usually takes.",
            f"{QUIET[0]}'s workflow goes silent after {QUIET[1]} on purpose: the hub marks it stalled after"
            f" {STALL_AFTER} s, and it speaks again after about {QUIET_FOR / 60:.0f} min.",
            f"Drive one more agent, {SANDBOX}, yourself with the workflow kit (it shows stalled until you do;"
            " add --stop-after vm_created to leave it silent midway):",
            f"  HUB_WEBHOOK_SECRET={settings.webhook_secret} {_this_command()} simulate"
            f" --url {base} --job {sandbox_job}",
            "",
            "Press Ctrl-C to stop.",
            "",
        ]
    )


def _this_command() -> str:
    """How to run status-hub as this process was run, so the printed commands work as printed
    (the venv's bin directory is seldom on PATH)."""
    launched = Path(sys.argv[0])
    if launched.name == "status-hub" and launched.is_file():
        return shlex.quote(str(launched.resolve()))
    return f"{shlex.quote(sys.executable)} -m hub.cli"


def _quiet(_line: str) -> None:
    """The demo's workflows do not narrate each callback; the dashboard shows them."""
