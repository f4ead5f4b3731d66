"""The OIDC token checks and the policy, pure: each refusal names its check, and the policy reads
GitHub's claims as GitHub writes them."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hub.domain.oidc_tokens import PolicyRefused, TokenRefused, key_id, verified_claims, workflow_of
from tests.support.oidc_issuer import AUDIENCE, REPOSITORY_ID, OidcIssuer

ALLOWED = frozenset({REPOSITORY_ID})


@pytest.fixture(scope="module")
def issuer() -> OidcIssuer:
    return OidcIssuer()  # keys and tokens only; nothing served


def _verify(issuer: OidcIssuer, token: str) -> dict[str, Any]:
    return verified_claims(token, issuer.public_key(), issuer=issuer.url, audience=AUDIENCE, now=time.time())


def test_a_github_token_verifies_and_names_its_workflow(issuer: OidcIssuer) -> None:
    token = issuer.token()
    assert key_id(token) == issuer.current_kid
    workflow = workflow_of(_verify(issuer, token), ALLOWED)
    assert (workflow.repository_id, workflow.repository, workflow.run_id) == (REPOSITORY_ID, "acme/infra", "4242")
    assert "acme/infra (id 1001), run 4242" in workflow.describe()


def test_an_audience_list_that_holds_the_hubs_is_accepted(issuer: OidcIssuer) -> None:
    assert _verify(issuer, issuer.token(aud=["other", AUDIENCE]))["aud"] == ["other", AUDIENCE]


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        ({"aud": ["other"]}, "aud"),
        ({"iss": None}, "iss"),
        ({"exp": True}, "exp"),
        ({"nbf": "soon"}, "nbf"),
        ({"iat": None}, "iat"),
    ],
    ids=["audience-list-without-the-hub", "no-issuer", "boolean-exp", "text-nbf", "no-iat"],
)
def test_a_claim_that_is_missing_or_mistyped_fails_its_check(
    issuer: OidcIssuer, overrides: dict[str, Any], check: str
) -> None:
    with pytest.raises(TokenRefused) as refused:
        _verify(issuer, issuer.token(**overrides))
    assert refused.value.check == check


@pytest.mark.parametrize(
    ("token", "check"),
    [
        ("a.b", "format"),
        ("eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "kid"),
        ("eyJhbGciOiJFUzI1NiIsImtpZCI6ImsifQ.e30.c2ln", "alg"),
    ],
    ids=["not-a-jwt", "no-kid", "es256"],
)
def test_a_header_is_checked_before_any_key_is_looked_up(token: str, check: str) -> None:
    with pytest.raises(TokenRefused) as refused:
        key_id(token)
    assert refused.value.check == check


@pytest.mark.parametrize(
    ("claims", "says"),
    [
        ({"repository_id": None}, "no numeric repository_id"),
        ({"repository_id": "12a"}, "no numeric repository_id"),
        ({"repository_id": "\u00b2"}, "no numeric repository_id"),
        ({"repository_id": True}, "no numeric repository_id"),
        ({"repository_id": "9009"}, "HUB_OIDC_REPOSITORIES"),
        ({"repository_id": str(REPOSITORY_ID), "event_name": "pull_request_target"}, "pull_request_target"),
        ({"repository_id": str(REPOSITORY_ID), "event_name": "workflow_run"}, "workflow_run"),
    ],
)
def test_the_policy_refuses_with_a_reason(claims: dict[str, Any], says: str) -> None:
    with pytest.raises(PolicyRefused, match=says):
        workflow_of(claims, ALLOWED)


def test_a_numeric_repository_id_is_read_too() -> None:
    assert workflow_of({"repository_id": REPOSITORY_ID}, ALLOWED).repository_id == REPOSITORY_ID
