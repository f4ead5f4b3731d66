"""Dashboard tokens: verified once, then trusted until their exp, in a bounded cache."""

from __future__ import annotations

import time

import jwt
import pytest

from hub.domain.tokens import Unauthenticated, VerifiedTokens, issue_dashboard_token

SECRET = "s" * 32


def test_a_verified_token_is_trusted_until_its_exp_and_refused_at_it() -> None:
    tokens = VerifiedTokens(SECRET)
    token = issue_dashboard_token(SECRET, "owner-1", ttl_seconds=60)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    viewer = tokens.verify(token)
    assert (viewer.owner_id, viewer.expires_at) == ("owner-1", exp)
    assert tokens.verify(token, now=exp - 1) is viewer  # from the cache: the same object
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.verify(token, now=exp)
    assert len(tokens) == 0


@pytest.mark.parametrize(
    "token",
    [
        issue_dashboard_token("o" * 32, "owner-1"),  # another hub's secret
        jwt.encode({"sub": "owner-1"}, SECRET, algorithm="HS256"),  # no exp
        "not a token",
    ],
    ids=["wrong-secret", "no-exp", "garbage"],
)
def test_a_token_that_does_not_verify_is_refused_and_not_kept(token: str) -> None:
    tokens = VerifiedTokens(SECRET)
    with pytest.raises(Unauthenticated):
        tokens.verify(token)
    assert len(tokens) == 0


def test_the_cache_is_bounded_and_forgets_its_oldest() -> None:
    tokens = VerifiedTokens(SECRET, size=2)
    issued = [issue_dashboard_token(SECRET, f"owner-{n}") for n in range(3)]
    for token in issued:
        tokens.verify(token)
    assert len(tokens) == 2
    assert tokens.verify(issued[0]).owner_id == "owner-0"  # verified again, and kept again
    assert time.time() < tokens.verify(issued[2]).expires_at


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {"sub": "owner-1", "iat": now, "exp": now + 60}
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (jwt.encode(_claims(exp=int(time.time()) - 10), SECRET, algorithm="HS256"), "The token has expired."),
        (jwt.encode(_claims(nbf=int(time.time()) + 600), SECRET, algorithm="HS256"), "not valid yet"),
        (jwt.encode(_claims(exp=None), SECRET, algorithm="HS256"), "no exp claim: dashboard tokens must expire"),
        (jwt.encode(_claims(sub=None), SECRET, algorithm="HS256"), "no sub claim: it must be the owner id"),
        (jwt.encode(_claims(), "o" * 32, algorithm="HS256"), "signature does not verify"),
        (jwt.encode(_claims(), SECRET * 2, algorithm="HS512"), "signed with HS512; this hub accepts HS256 only"),
        (jwt.encode(_claims(), None, algorithm="none"), "signed with none; this hub accepts HS256 only"),
        ("not a token", "not a JWT"),
    ],
    ids=["expired", "not-yet-valid", "no-exp", "no-sub", "bad-signature", "other-algorithm", "alg-none", "garbage"],
)
def test_each_token_error_says_what_is_wrong(token: str, message: str) -> None:
    with pytest.raises(Unauthenticated) as refused:
        VerifiedTokens(SECRET).verify(token)
    assert message in str(refused.value)
    assert token not in str(refused.value)
