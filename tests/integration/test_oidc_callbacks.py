"""GitHub Actions OIDC callbacks on real `status-hub serve` processes, against a local OpenID issuer
(discovery and JWKS over HTTP on loopback, RSA keys made by the test) that signs GitHub-shaped tokens.

A token that does not verify is a 401 naming the failed check; a verified one the policy refuses is a
403; the keys are fetched once, again for a rotated key, and kept when the issuer goes down; the token
never reaches a log."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.cli.simulate import workflow
from hub.settings import Settings
from tests.integration.test_webhook import table_counts
from tests.support.api import Api
from tests.support.oidc_issuer import (
    AUDIENCE,
    OTHER_REPOSITORY_ID,
    REPOSITORY_ID,
    UNLISTED_REPOSITORY_ID,
    OidcIssuer,
    oidc_environment,
    oidc_issuer,
)
from tests.support.process import Replica, hub_environment, hub_process

OWNER = "owner-oidc"


@pytest.fixture(scope="module")
async def issuer() -> AsyncIterator[OidcIssuer]:
    async with oidc_issuer() as issuer:
        yield issuer


@pytest.fixture(scope="module")
async def replica(settings: Settings, issuer: OidcIssuer) -> AsyncIterator[Replica]:
    # DEBUG: every line a library might write about a request is there to be searched for the token.
    env = hub_environment(settings, **oidc_environment(issuer), HUB_LOG_LEVEL="DEBUG")
    async with hub_process(env) as replica:
        yield replica


@pytest.fixture
async def api(replica: Replica, clean_db: AsyncEngine) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=replica.base, timeout=10) as client:
        yield Api(client)


async def test_a_workflow_reports_its_whole_provisioning_with_nothing_but_its_token(
    api: Api, issuer: OidcIssuer, replica: Replica
) -> None:
    agent_id, job_id = await api.new_job(OWNER, repository_id=REPOSITORY_ID)
    tokens = []
    for _, body in workflow(job_id):
        tokens.append(token := issuer.token())  # one per callback, as the example mints them
        response = await api.oidc_callback(body, token, delivery=str(uuid.uuid4()))
        assert response.status_code == 200, response.text
        assert response.json()["applied"] is True
    status = (await api.status(agent_id, OWNER)).json()
    assert (status["status"], status["version"]) == ("running", 7)
    # A redelivery (same X-GitHub-Delivery) with a fresh token is the same delivery.
    body = {"job_id": job_id, "type": "heartbeat"}
    first = await api.oidc_callback(body, issuer.token(), delivery="heartbeat-1")
    again = await api.oidc_callback(body, issuer.token(), delivery="heartbeat-1")
    assert first.json() == again.json() == {"received": True, "applied": True, "version": 8}
    # The keys were fetched once for all of it.
    assert issuer.jwks_fetches == 1
    printed = replica.printed()
    assert "acme/infra (id 1001), run 4242" in printed  # who called is logged...
    assert not any(token in printed or token.rsplit(".", 1)[1] in printed for token in tokens)  # ...never the token


def _expired(issuer: OidcIssuer) -> str:
    now = int(time.time())
    return issuer.token(iat=now - 900, nbf=now - 900, exp=now - 600)


def _tampered(issuer: OidcIssuer) -> str:
    # Claims of another repository under the signature of real ones.
    header, _, signature = issuer.token().split(".")
    claims = issuer.claims(repository_id=str(OTHER_REPOSITORY_ID))
    encoded = json.dumps(claims).encode()
    return f"{header}.{base64.urlsafe_b64encode(encoded).rstrip(b'=').decode()}.{signature}"


REFUSED: list[tuple[str, Callable[[OidcIssuer], str], str]] = [
    ("wrong-audience", lambda issuer: issuer.token(aud="someone-else"), "aud"),
    ("wrong-issuer", lambda issuer: issuer.token(iss="https://token.actions.githubusercontent.com"), "iss"),
    ("expired", _expired, "exp"),
    ("not-yet-valid", lambda issuer: issuer.token(nbf=int(time.time()) + 600), "nbf"),
    ("issued-in-the-future", lambda issuer: issuer.token(iat=int(time.time()) + 600), "iat"),
    ("no-exp", lambda issuer: issuer.token(exp=None), "exp"),
    ("hs256-with-the-public-key", lambda issuer: issuer.forged("HS256"), "alg"),
    ("alg-none", lambda issuer: issuer.forged("none"), "alg"),
    ("tampered-claims", _tampered, "signature"),
    ("unpublished-key", lambda issuer: issuer.token(kid=issuer.new_key()), "kid"),
    ("not-a-jwt", lambda issuer: "not-a-jwt", "format"),
]


@pytest.mark.parametrize(("make", "check"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
async def test_a_token_that_does_not_verify_is_a_401_naming_the_check(
    api: Api,
    issuer: OidcIssuer,
    replica: Replica,
    db_engine: AsyncEngine,
    make: Callable[[OidcIssuer], str],
    check: str,
) -> None:
    _, job_id = await api.new_job(OWNER)
    before = await table_counts(db_engine)
    token = make(issuer)
    response = await api.oidc_callback({"job_id": job_id, "status": "provisioning"}, token)
    assert response.status_code == 401, response.text
    assert response.json()["extra"] == {"check": check}
    assert f"failed the {check} check" in response.json()["detail"]
    assert await table_counts(db_engine) == before
    assert token not in replica.printed()


async def test_a_verified_token_the_policy_refuses_is_a_403(api: Api, issuer: OidcIssuer) -> None:
    _, job_id = await api.new_job(OWNER)
    _, bound_job = await api.new_job(OWNER, repository_id=REPOSITORY_ID)
    start = {"job_id": job_id, "status": "provisioning"}
    unauthorized_before = await _unauthorized_count(api)
    refusals: list[tuple[httpx.Response, str]] = [
        (
            await api.oidc_callback(
                start, issuer.token(repository_id=str(UNLISTED_REPOSITORY_ID), repository="mallory/fork")
            ),
            "HUB_OIDC_REPOSITORIES",
        ),
        (
            await api.oidc_callback(start, issuer.token(event_name="pull_request_target")),
            "pull_request_target",
        ),
        (
            await api.oidc_callback(start, issuer.token(event_name="workflow_run")),
            "workflow_run",
        ),
        # A job provisioned with {"repositoryId": 1001}: another allowed repository may not report it...
        (
            await api.oidc_callback(
                {"job_id": bound_job, "status": "provisioning"},
                issuer.token(repository_id=str(OTHER_REPOSITORY_ID), repository="acme/other"),
            ),
            f"only from repository id {REPOSITORY_ID}",
        ),
        # ...nor may a signed callback, which proves no repository.
        (await api.standard_callback({"job_id": bound_job, "status": "provisioning"}), "proves no repository"),
    ]
    for response, says in refusals:
        assert response.status_code == 403, response.text
        assert says in response.json()["detail"]
    # Counted with the 401s: the outcome labels are a fixed set.
    assert await _unauthorized_count(api) == unauthorized_before + len(refusals)
    # The job's own repository may; an unbound job takes any allowed repository.
    assert (await api.oidc_callback({"job_id": bound_job, "status": "provisioning"}, issuer.token())).status_code == 200
    other = issuer.token(repository_id=str(OTHER_REPOSITORY_ID), repository="acme/other")
    assert (await api.oidc_callback(start, other)).status_code == 200


async def test_a_job_cannot_be_bound_to_a_repository_that_may_not_call(api: Api) -> None:
    agent = await api.create_agent(OWNER)
    refused = await api.provision(agent["id"], repository_id=UNLISTED_REPOSITORY_ID, expect=400)
    assert "HUB_OIDC_REPOSITORIES" in refused["detail"]


async def _unauthorized_count(api: Api) -> float:
    text = (await api.client.get("/metrics")).text
    counter = 'statushub_callbacks_total{outcome="unauthorized"}'
    line = next(line for line in text.splitlines() if line.startswith(counter))
    return float(line.split()[-1])


async def test_a_rotated_key_is_accepted_after_one_refetch(settings: Settings, clean_db: AsyncEngine) -> None:
    async with (
        oidc_issuer() as issuer,
        hub_process(hub_environment(settings, **oidc_environment(issuer))) as replica,
        httpx.AsyncClient(base_url=replica.base, timeout=10) as client,
    ):
        api = Api(client)
        _, job_id = await api.new_job(OWNER)
        heartbeat = {"job_id": job_id, "type": "heartbeat"}
        old = issuer.current_kid
        assert (await api.oidc_callback(heartbeat, issuer.token())).status_code == 200
        assert issuer.jwks_fetches == 1
        issuer.rotate()  # the new key signs; the old one is withdrawn
        response = await api.oidc_callback(heartbeat, issuer.token())
        assert response.status_code == 200, response.text
        assert issuer.jwks_fetches == 2
        # The withdrawn key no longer verifies; and a made-up kid right after fetches nothing more.
        withdrawn = await api.oidc_callback(heartbeat, issuer.token(kid=old))
        unknown = await api.oidc_callback(heartbeat, issuer.token(kid=issuer.new_key()))
        for refused in (withdrawn, unknown):
            assert refused.status_code == 401 and refused.json()["extra"] == {"check": "kid"}
        assert issuer.jwks_fetches == 2


async def test_cached_keys_still_verify_when_the_issuer_is_down(settings: Settings, clean_db: AsyncEngine) -> None:
    async with (
        oidc_issuer() as issuer,
        hub_process(hub_environment(settings, **oidc_environment(issuer))) as replica,
        httpx.AsyncClient(base_url=replica.base, timeout=10) as client,
    ):
        api = Api(client)
        _, job_id = await api.new_job(OWNER)
        heartbeat = {"job_id": job_id, "type": "heartbeat"}
        assert (await api.oidc_callback(heartbeat, issuer.token())).status_code == 200
        await issuer.stop()
        assert (await api.oidc_callback(heartbeat, issuer.token())).status_code == 200
        # An unknown kid makes the hub try the issuer: it cannot tell, so the workflow retries later...
        unknown = await api.oidc_callback(heartbeat, issuer.token(kid=issuer.new_key()))
        assert unknown.status_code == 503 and unknown.headers["Retry-After"] == "5", unknown.text
        # ...and the failed refresh kept the keys it had.
        assert (await api.oidc_callback(heartbeat, issuer.token())).status_code == 200
        assert issuer.jwks_fetches == 1
        printed = replica.printed()
    assert "keeping the 1 keys fetched before" in printed


async def test_a_hub_starts_while_its_issuer_is_down(settings: Settings, clean_db: AsyncEngine) -> None:
    async with (
        oidc_issuer(started=False) as issuer,
        hub_process(hub_environment(settings, **oidc_environment(issuer))) as replica,
        httpx.AsyncClient(base_url=replica.base, timeout=10) as client,
    ):
        api = Api(client)
        _, job_id = await api.new_job(OWNER)
        response = await api.oidc_callback({"job_id": job_id, "type": "heartbeat"}, issuer.token())
        assert response.status_code == 503 and response.headers["Retry-After"] == "5", response.text
        # Signed callbacks do not depend on the issuer.
        assert (await api.standard_callback({"job_id": job_id, "type": "heartbeat"})).status_code == 200


def _claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def test_the_test_tokens_are_github_shaped() -> None:
    issuer = OidcIssuer()
    claims = _claims_of(issuer.token())
    assert claims.keys() >= {
        "iss",
        "aud",
        "sub",
        "repository",
        "repository_id",
        "repository_owner",
        "event_name",
        "run_id",
        "workflow",
        "job_workflow_ref",
        "iat",
        "nbf",
        "exp",
    }
    assert claims["aud"] == AUDIENCE and claims["repository_id"] == str(REPOSITORY_ID)
