"""Dashboard tokens: verified once, then trusted until their exp, in a bounded cache."""

from __future__ import annotations

import time
from collections.abc import Callable

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


def _token(
    *,
    key: str = SECRET,
    algorithm: str = "HS256",
    sub: str | None = "owner-1",
    exp_in: int | None = 60,
    nbf_in: int | None = None,
) -> Callable[[], str]:
    """A maker of a token whose times are relative to when it is made: a whole suite takes longer
    than a token's minute of validity, so tokens are not made when pytest collects the tests."""

    def make() -> str:
        now = int(time.time())
        claims = {
            "sub": sub,
            "iat": now,
            "exp": None if exp_in is None else now + exp_in,
            "nbf": None if nbf_in is None else now + nbf_in,
        }
        present = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode(present, key if algorithm != "none" else None, algorithm=algorithm)  # type: ignore[arg-type]

    return make


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_token(exp_in=-10), "The token has expired."),
        (_token(nbf_in=600), "not valid yet"),
        (_token(exp_in=None), "no exp claim: dashboard tokens must expire"),
        (_token(sub=None), "no sub claim: it must be the owner id"),
        (_token(key="o" * 32), "signature does not verify"),
        (_token(key=SECRET * 2, algorithm="HS512"), "signed with HS512; this hub accepts HS256 only"),
        (_token(algorithm="none"), "signed with none; this hub accepts HS256 only"),
        (lambda: "not a token", "not a JWT"),
    ],
    ids=["expired", "not-yet-valid", "no-exp", "no-sub", "bad-signature", "other-algorithm", "alg-none", "garbage"],
)
def test_each_token_error_says_what_is_wrong(make: Callable[[], str], message: str) -> None:
    token = make()
    with pytest.raises(Unauthenticated) as refused:
        VerifiedTokens(SECRET).verify(token)
    assert message in str(refused.value)
    assert token not in str(refused.value)
