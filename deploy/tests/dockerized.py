"""What the deploy tests drive: containers through the docker CLI, the hub's API through httpx."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from hub.domain.signatures import sign
from hub.domain.tokens import issue_dashboard_token

# Every container and network a run makes carries this label (its value: the run's id), so that
# what a killed run left behind can be found: docker ps -a --filter label=status-hub-deploy-test.
LABEL = "status-hub-deploy-test"
DOCKER_TIMEOUT = 120.0
# From `docker run` to a hub that answers: migrations on an empty database included.
START_TIMEOUT = 60.0
SOCKET_TIMEOUT = 10.0


class DockerError(RuntimeError):
    """A docker command failed; the message has its stderr."""


def docker(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = DOCKER_TIMEOUT, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``docker ARGS``; DockerError when it fails and ``check`` is set."""
    result = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
        check=False,
    )
    if check and result.returncode != 0:
        raise DockerError(f"docker {' '.join(args[:3])} ... exited {result.returncode}: {result.stderr.strip()}")
    return result


def inspect(kind: str, name: str) -> dict[str, Any]:
    """``docker KIND inspect NAME`` (image, container, network) as a dict."""
    found: list[dict[str, Any]] = json.loads(docker(kind, "inspect", name).stdout)
    return found[0]


def free_port(host: str) -> int:
    """A port nothing listens on at ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Secrets:
    """The hub's three secrets, made for one test run."""

    webhook: str
    jwt: str
    admin: str

    @classmethod
    def generate(cls) -> Secrets:
        return cls(webhook=secrets.token_urlsafe(24), jwt=secrets.token_urlsafe(48), admin=secrets.token_urlsafe(24))

    def hub_env(self) -> dict[str, str]:
        return {"HUB_WEBHOOK_SECRET": self.webhook, "HUB_JWT_SECRET": self.jwt, "HUB_ADMIN_TOKEN": self.admin}


@dataclass(frozen=True, slots=True)
class Container:
    name: str

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = inspect("container", self.name)["State"]
        return state

    def logs(self, tail: int = 40) -> str:
        result = docker("logs", "--tail", str(tail), self.name, check=False)
        return (result.stdout + result.stderr).strip()

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return docker("exec", self.name, *command, check=False)

    def remove(self) -> None:
        docker("rm", "--force", "--volumes", self.name, check=False)


def run_container(
    image: str,
    name: str,
    *,
    run_id: str,
    env: Mapping[str, str],
    options: Sequence[str] = (),
    command: Sequence[str] = (),
) -> Container:
    """``docker run --detach``. The environment's values reach docker through its own environment,
    not its command line (``--env NAME``), so secrets do not show in the process list."""
    args = ["run", "--detach", "--name", name, "--label", f"{LABEL}={run_id}", *options]
    for key in env:
        args += ["--env", key]
    docker(*args, image, *command, env=env)
    return Container(name)


def wait_until_answering(url: str, container: Container, *, timeout: float = START_TIMEOUT) -> float:
    """Poll ``url`` until it answers 200; the seconds that took. Fails at once when the container
    stops, and after ``timeout`` seconds; both with the container's last log lines."""
    started = time.monotonic()
    deadline = started + timeout
    last = "no answer yet"
    with httpx.Client(timeout=2.0) as client:
        while True:
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return time.monotonic() - started
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            state = container.state()
            if not state["Running"]:
                raise AssertionError(
                    f"{container.name} exited ({state['ExitCode']}) before {url} answered; its log:\n{container.logs()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{url} did not answer 200 within {timeout} s (last: {last}); "
                    f"{container.name}'s log:\n{container.logs()}"
                )
            time.sleep(0.2)


class HubApi:
    """The calls of the main application (admin), of a workflow (signed callbacks) and of a
    dashboard (its token), on one hub URL."""

    def __init__(self, client: httpx.AsyncClient, hub_secrets: Secrets) -> None:
        self.client = client
        self.secrets = hub_secrets

    def token(self, owner_id: str) -> str:
        return issue_dashboard_token(self.secrets.jwt, owner_id, ttl_seconds=600)

    async def new_job(self, owner_id: str) -> tuple[str, str]:
        """Create an agent and provision it: (agent id, job id)."""
        admin = {"Authorization": f"Bearer {self.secrets.admin}"}
        created = await self.client.post("/api/agents", json={"ownerId": owner_id, "name": "deploy"}, headers=admin)
        assert created.status_code == 201, created.text
        agent_id: str = created.json()["id"]
        provisioned = await self.client.post(f"/api/agents/{agent_id}/provision", json={}, headers=admin)
        assert provisioned.status_code == 201, provisioned.text
        job_id: str = provisioned.json()["jobId"]
        return agent_id, job_id

    async def callback(self, body: dict[str, Any]) -> dict[str, Any]:
        """A workflow's signed callback; its answer, which must be 200 and applied."""
        raw = json.dumps(body).encode()
        response = await self.client.post(
            "/api/webhooks/github",
            content=raw,
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": sign(self.secrets.webhook, raw),
                "X-GitHub-Delivery": secrets.token_hex(16),
            },
        )
        assert response.status_code == 200, response.text
        reply: dict[str, Any] = response.json()
        assert reply["applied"] is True, reply
        return reply

    def dashboard_socket(self, owner_id: str, *, origin: str | None = None) -> connect:
        """The dashboard's socket (``/api/ws``), as the owner; subscribe with ``subscribe``."""
        base = str(self.client.base_url).rstrip("/")
        headers = {"Authorization": f"Bearer {self.token(owner_id)}"}
        if origin is not None:
            headers["Origin"] = origin
        return connect(
            base.replace("http://", "ws://", 1) + "/api/ws",
            additional_headers=headers,
            proxy=None,
            compression=None,
            open_timeout=SOCKET_TIMEOUT,
        )


async def subscribe(ws: ClientConnection, agent_id: str) -> None:
    await ws.send(json.dumps({"type": "subscribe", "agentIds": [agent_id]}))


@dataclass(slots=True)
class Report:
    """What the run measured, printed at the end of the session."""

    lines: list[str] = field(default_factory=list)


REPORT = Report()


@dataclass(frozen=True, slots=True)
class Images:
    hub: str
    proxy: str


@dataclass(frozen=True, slots=True)
class RunningHub:
    container: Container
    url: str


def start_hub(
    image: str, name: str, *, run_id: str, env: dict[str, str], host: str, options: tuple[str, ...] = ()
) -> RunningHub:
    """A hub container on the host's network, listening on a free port of ``host``; returned once
    /healthz answers 200 (/livez is what the image's HEALTHCHECK asks, /healthz what every hub has)."""
    port = free_port(host)
    container = run_container(
        image,
        name,
        run_id=run_id,
        env={**env, "LISTEN_HOST": host, "LISTEN_PORT": str(port)},
        options=("--network", "host", *options),
    )
    url = f"http://{host}:{port}"
    try:
        seconds = wait_until_answering(f"{url}/healthz", container)
    except BaseException:
        container.remove()
        raise
    REPORT.lines.append(f"{name}: /healthz answered {seconds:.1f} s after docker run")
    return RunningHub(container, url)
