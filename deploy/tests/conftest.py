"""The deploy tests' fixtures: the image under test, run against this machine's Postgres and Redis.

`make test-deploy` builds the images and names them here through STATUS_HUB_DEPLOY_IMAGE (the hub)
and STATUS_HUB_DEPLOY_PROXY (a Caddy image). The containers share the host's network, where
Postgres and Redis listen on loopback; the run makes its own database and drops it, and its own
Redis channel prefix."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from dockerized import LABEL, REPORT, DockerError, Images, RunningHub, Secrets, docker, inspect, start_hub

from tests.support.config import REDIS_URL
from tests.support.database import fresh_database


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT.lines:
        terminalreporter.section("what the deploy tests measured")
        for line in REPORT.lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def images() -> Images:
    hub = os.environ.get("STATUS_HUB_DEPLOY_IMAGE", "")
    proxy = os.environ.get("STATUS_HUB_DEPLOY_PROXY", "")
    if not hub or not proxy:
        pytest.fail("Run these tests with `make test-deploy`: it builds the images and names them.", pytrace=False)
    try:
        size = inspect("image", hub)["Size"]
        inspect("image", proxy)
    except (DockerError, OSError) as exc:
        pytest.fail(f"The images are not there, or docker does not answer: {exc}", pytrace=False)
    REPORT.lines.append(f"image {hub}: {size / 1e6:.0f} MB")
    return Images(hub=hub, proxy=proxy)


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def hub_secrets() -> Secrets:
    return Secrets.generate()


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    """An empty database of this run (the first hub to start migrates it), dropped afterwards."""
    async with fresh_database("status_hub_deploy") as url:
        yield url


@pytest.fixture(scope="session")
def hub_env(database_url: str, hub_secrets: Secrets, run_id: str) -> dict[str, str]:
    """The HUB_* settings every container of this run shares, as one deployment's replicas do."""
    return {
        "HUB_DATABASE_URL": database_url,
        "HUB_REDIS_URL": REDIS_URL,
        # Pub/sub ignores the database number: a prefix of its own keeps this run apart.
        "HUB_CHANNEL_PREFIX": f"deploy-{run_id}:",
        **hub_secrets.hub_env(),
    }


@pytest.fixture(scope="session")
def hub(images: Images, hub_env: dict[str, str], run_id: str) -> Iterator[RunningHub]:
    """One hub container, hardened as it should run in production: read-only root filesystem, no
    capabilities, no privilege escalation."""
    running = start_hub(
        images.hub,
        f"status-hub-deploy-{run_id}-hub",
        run_id=run_id,
        env=hub_env,
        host="127.0.0.1",
        options=("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"),
    )
    try:
        yield running
    finally:
        running.container.remove()


@pytest.fixture(scope="session")
def network(run_id: str) -> Iterator[tuple[str, str]]:
    """A docker network of this run: (its name, the host's address on it)."""
    name = f"status-hub-deploy-{run_id}"
    docker("network", "create", "--label", f"{LABEL}={run_id}", name)
    try:
        gateway: str = inspect("network", name)["IPAM"]["Config"][0]["Gateway"]
        yield name, gateway
    finally:
        docker("network", "rm", name, check=False)
