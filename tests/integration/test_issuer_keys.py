"""The OIDC issuer's keys as the hub fetches and keeps them, against a local issuer over real HTTP,
with the hub's clock in the test's hands (so rate limits and ages are exact, with no waiting)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from hub.domain.oidc_tokens import TokenRefused
from hub.runtime.oidc_verifier import IssuerKeys, KeysUnavailable
from tests.support.oidc_issuer import OidcIssuer, oidc_issuer

REFETCH, MAX_AGE, RETRY = 60.0, 3600.0, 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def keys_of(issuer: OidcIssuer, client: httpx.AsyncClient, clock: Clock) -> IssuerKeys:
    return IssuerKeys(issuer.url, client, refetch_interval=REFETCH, max_age=MAX_AGE, retry_interval=RETRY, clock=clock)


async def test_callers_at_first_use_share_one_fetch(client: httpx.AsyncClient) -> None:
    async with oidc_issuer() as issuer:
        keys = keys_of(issuer, client, Clock())
        found = await asyncio.gather(*(keys.key(issuer.current_kid) for _ in range(10)))
        assert len({id(key) for key in found}) == 1
        assert (keys.attempts, issuer.jwks_fetches) == (1, 1)


async def test_an_issuer_down_at_first_use_is_tried_again_after_the_retry_interval(client: httpx.AsyncClient) -> None:
    async with oidc_issuer(started=False) as issuer:
        clock = Clock()
        keys = keys_of(issuer, client, clock)
        with pytest.raises(KeysUnavailable):
            await keys.key(issuer.current_kid)
        issuer.start()
        clock.now += RETRY - 1
        with pytest.raises(KeysUnavailable):
            await keys.key(issuer.current_kid)  # not tried again yet
        assert keys.attempts == 1
        clock.now += 1
        await keys.key(issuer.current_kid)
        assert (keys.attempts, issuer.jwks_fetches) == (2, 1)


async def test_unknown_kids_refetch_at_most_once_per_interval(client: httpx.AsyncClient) -> None:
    async with oidc_issuer() as issuer:
        clock = Clock()
        keys = keys_of(issuer, client, clock)
        first = issuer.current_kid
        await keys.key(first)
        rotated = issuer.rotate()
        await keys.key(rotated)  # one refetch finds the rotated key
        assert issuer.jwks_fetches == 2
        for made_up in ("made-up-1", "made-up-2"):
            with pytest.raises(TokenRefused) as refused:
                await keys.key(made_up)
            assert refused.value.check == "kid"
        assert issuer.jwks_fetches == 2  # within the interval: no fetch for them
        clock.now += REFETCH
        again = issuer.rotate()
        await keys.key(again)
        assert issuer.jwks_fetches == 3
        with pytest.raises(TokenRefused):
            await keys.key(first)  # withdrawn twice over


async def test_old_keys_are_refreshed_in_the_background_and_kept_when_that_fails(client: httpx.AsyncClient) -> None:
    async with oidc_issuer() as issuer:
        clock = Clock()
        keys = keys_of(issuer, client, clock)
        kid = issuer.current_kid
        cached = await keys.key(kid)
        clock.now += MAX_AGE
        await issuer.stop()
        assert await keys.key(kid) is cached  # answered from the cache while the refresh runs
        await keys.settled()
        assert keys.attempts == 2 and keys.kids == {kid}
        # The failed refresh is not retried by every callback, only after the retry interval.
        assert await keys.key(kid) is cached
        assert keys.attempts == 2
        clock.now += RETRY
        issuer.start()
        await keys.key(kid)
        await keys.settled()
        assert keys.attempts == 3 and issuer.jwks_fetches == 2
        # Fresh again: no more refreshes until MAX_AGE has passed once more.
        clock.now += MAX_AGE - 1
        await keys.key(kid)
        assert keys.attempts == 3


@pytest.mark.parametrize(
    ("discovery", "reason"),
    [
        ({"issuer": "https://token.actions.githubusercontent.com"}, "names issuer"),
        ({"jwks_uri": "http://keys.example.com/jwks"}, "not an https URL"),
    ],
    ids=["another-issuer", "plain-http-jwks"],
)
async def test_a_discovery_document_that_does_not_fit_is_refused(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, discovery: dict[str, str], reason: str
) -> None:
    async with oidc_issuer() as issuer:
        issuer.discovery_overrides = discovery
        keys = keys_of(issuer, client, Clock())
        with pytest.raises(KeysUnavailable):
            await keys.key(issuer.current_kid)
        assert issuer.jwks_fetches == 0
        assert reason in caplog.text
