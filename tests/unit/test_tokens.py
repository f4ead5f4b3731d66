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
