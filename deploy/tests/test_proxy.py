"""compose.yaml's front half, on this machine: two hub replicas behind Caddy with deploy/Caddyfile.

The replicas share the host's network (Postgres and Redis listen on its loopback) and listen on the
host's address on a network of this run; Caddy runs on that network as compose runs it (its own
network namespace, :8080, the Caddyfile at /etc/caddy/Caddyfile), published on a loopback port.
UPSTREAMS points it at the two replicas."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from dockerized import (
    REPORT,
    SOCKET_TIMEOUT,
    Container,
    HubApi,
    Images,
    RunningHub,
    Secrets,
    free_port,
    run_container,
    start_hub,
    subscribe,
    wait_until_answering,
)

from tests.support.ws import close_code, next_frame, next_status

CADDYFILE = Path(__file__).resolve().parents[1] / "Caddyfile"
CADDY_COMMAND = ("caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile")
# The longest an idle socket waits for the hub's ping (HUB_PING_INTERVAL's maximum).
PING_INTERVAL = 30.0


@dataclass(frozen=True, slots=True)
class Deployment:
    proxy: str
    replicas: tuple[RunningHub, RunningHub]


def caddyfile_for(replica: RunningHub, directory: Path) -> Path:
    """deploy/Caddyfile as it is, unless this hub has no /readyz yet (another change adds it): then
    a copy whose active health check asks /healthz instead, said in the run's report."""
    if httpx.get(f"{replica.url}/readyz", timeout=5.0).status_code != 404:
        return CADDYFILE
    text = CADDYFILE.read_text()
    assert text.count("health_uri /readyz\n") == 1
    REPORT.lines.append("proxy: this hub has no /readyz yet; Caddy's health checks asked /healthz instead")
    copy = directory / "Caddyfile"
    copy.write_text(text.replace("health_uri /readyz\n", "health_uri /healthz\n"))
    return copy


@pytest.fixture(scope="module")
def deployment(
    images: Images,
    hub_env: dict[str, str],
    run_id: str,
    network: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    network_name, host = network
    replica_env = {**hub_env, "HUB_PING_INTERVAL": str(int(PING_INTERVAL))}
    replicas: list[RunningHub] = []
    proxy: Container | None = None
    try:
        for n in (1, 2):
            replicas.append(
                start_hub(images.hub, f"status-hub-deploy-{run_id}-hub-{n}", run_id=run_id, env=replica_env, host=host)
            )
        caddyfile = caddyfile_for(replicas[0], tmp_path_factory.mktemp("proxy"))
        port = free_port("127.0.0.1")
        proxy = run_container(
            images.proxy,
            f"status-hub-deploy-{run_id}-proxy",
            run_id=run_id,
            env={"UPSTREAMS": " ".join(replica.url.removeprefix("http://") for replica in replicas)},
            options=(
                "--network",
                network_name,
                "--publish",
                f"127.0.0.1:{port}:8080",
                "--volume",
                f"{caddyfile}:/etc/caddy/Caddyfile:ro",
            ),
            command=CADDY_COMMAND,
        )
        url = f"http://127.0.0.1:{port}"
        seconds = wait_until_answering(f"{url}/healthz", proxy)
        REPORT.lines.append(f"proxy: /healthz through Caddy answered {seconds:.1f} s after docker run")
        yield Deployment(url, (replicas[0], replicas[1]))
    finally:
        for container in [*(replica.container for replica in replicas), *([proxy] if proxy else [])]:
            container.remove()


@pytest.fixture
async def through_proxy(deployment: Deployment, hub_secrets: Secrets) -> AsyncIterator[HubApi]:
    async with httpx.AsyncClient(base_url=deployment.proxy, timeout=SOCKET_TIMEOUT) as client:
        yield HubApi(client, hub_secrets)


async def sockets_held(replica: RunningHub) -> int:
    async with httpx.AsyncClient(timeout=SOCKET_TIMEOUT) as client:
        count: int = (await client.get(f"{replica.url}/healthz")).json()["sockets"]
        return count


async def test_a_callback_to_either_replica_reaches_a_socket_held_through_the_proxy(
    deployment: Deployment, through_proxy: HubApi, hub_secrets: Secrets
) -> None:
    agent_id, job_id = await through_proxy.new_job("owner-proxy")
    async with through_proxy.dashboard_socket("owner-proxy") as ws:
        await subscribe(ws, agent_id)
        version = (await next_status(ws))["version"]
        held = [await sockets_held(replica) for replica in deployment.replicas]
        assert sorted(held) == [0, 1], held
        first, second = deployment.replicas
        holder, other = (first, second) if held[0] == 1 else (second, first)
        # The replica without the socket first: its publish crosses Redis to the other replica.
        steps = iter(["vm_created", "network_configured", "ansible_started"])
        for replica in (other, holder):
            async with httpx.AsyncClient(base_url=replica.url, timeout=SOCKET_TIMEOUT) as direct:
                reply = await HubApi(direct, hub_secrets).callback(
                    {"job_id": job_id, "status": "provisioning", "step": next(steps)}
                )
            pushed = await next_status(ws)
            assert pushed["version"] == reply["version"] == version + 1
            version += 1
        # And a callback through the proxy, as a workflow sends it.
        reply = await through_proxy.callback({"job_id": job_id, "status": "provisioning", "step": next(steps)})
        pushed = await next_status(ws)
    assert (pushed["version"], pushed["currentStep"]) == (reply["version"], "ansible_started")


async def test_the_proxy_keeps_the_host_so_a_same_origin_page_may_open_a_socket(
    deployment: Deployment, through_proxy: HubApi
) -> None:
    agent_id, _ = await through_proxy.new_job("owner-origin")
    async with through_proxy.dashboard_socket("owner-origin", origin=deployment.proxy) as ws:
        await subscribe(ws, agent_id)
        assert (await next_status(ws))["status"] == "pending"
    async with through_proxy.dashboard_socket("owner-origin", origin="http://elsewhere.test") as ws:
        assert await close_code(ws) == 4403


@pytest.mark.timeout(PING_INTERVAL * 3)
async def test_the_proxy_keeps_a_quiet_socket_open_past_30_seconds(
    deployment: Deployment, through_proxy: HubApi
) -> None:
    agent_id, job_id = await through_proxy.new_job("owner-quiet")
    async with through_proxy.dashboard_socket("owner-quiet") as ws:
        await subscribe(ws, agent_id)
        version = (await next_status(ws))["version"]
        quiet_since = time.monotonic()
        # Nothing crosses the proxy until the hub's ping, HUB_PING_INTERVAL (30 s) later.
        ping = await next_frame(ws, "ping", timeout=PING_INTERVAL + 15.0)
        quiet = time.monotonic() - quiet_since
        assert ping["versions"] == {agent_id: version}
        assert quiet > PING_INTERVAL - 2.0
        # The socket still works both ways.
        reply = await through_proxy.callback({"job_id": job_id, "status": "provisioning", "step": "vm_created"})
        assert (await next_status(ws))["version"] == reply["version"]
    REPORT.lines.append(f"proxy: a socket quiet for {quiet:.1f} s stayed open and took the next status")
