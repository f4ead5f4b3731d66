"""GitHub Actions OIDC tokens verified against their issuer's published keys.

The keys come from the issuer's OpenID discovery document (``/.well-known/openid-configuration``)
and the JWKS it names, fetched with an async HTTP client (the event loop never waits on the network)
at first use, not at start-up: an issuer that is down cannot stop a replica from starting. They are
cached by ``kid``:

- a token with an unknown ``kid`` (the issuer rotated its keys) fetches them again, at most once per
  ``REFETCH_INTERVAL`` so a stream of made-up ids cannot make the hub hammer the issuer;
- after ``MAX_AGE`` the keys are fetched again in the background (a key the issuer withdrew stops
  verifying) while the cached ones keep serving;
- a fetch that fails keeps the keys already held, and is not tried again for ``RETRY_INTERVAL``.

Until keys have been fetched once, or when a token's ``kid`` is unknown and the fetch failed, a
callback cannot be verified either way: KeysUnavailable (503, retried by the workflow).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from hub.domain.oidc_tokens import ALGORITHM, TokenRefused, Workflow, key_id, verified_claims, workflow_of
from hub.settings import Settings, is_loopback

log = logging.getLogger(__name__)

REFETCH_INTERVAL: Final = 60.0
MAX_AGE: Final = 3600.0
RETRY_INTERVAL: Final = 5.0
FETCH_TIMEOUT: Final = 5.0
# A discovery document or JWKS is a few KiB; anything far larger is not one.
MAX_DOCUMENT_BYTES: Final = 512 * 1024
DISCOVERY_PATH: Final = "/.well-known/openid-configuration"


class KeysUnavailable(Exception):
    """The issuer's keys could not be fetched, so the token can be neither accepted nor refused."""


class IssuerKeys:
    """The issuer's RS256 signing keys by ``kid``, fetched and refreshed as the module says."""

    def __init__(
        self,
        issuer: str,
        client: httpx.AsyncClient,
        *,
        refetch_interval: float = REFETCH_INTERVAL,
        max_age: float = MAX_AGE,
        retry_interval: float = RETRY_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._client = client
        self._refetch_interval = refetch_interval
        self._max_age = max_age
        self._retry_interval = retry_interval
        self._clock = clock
        self._keys: dict[str, RSAPublicKey] = {}
        self._jwks_uri: str | None = None
        self._fetched_at: float | None = None  # the last fetch that succeeded
        self._attempted_at: float | None = None  # the last fetch, whatever came of it
        self._refetched_for_kid_at: float | None = None  # the last fetch an unknown kid asked for
        self._fetch: asyncio.Task[bool] | None = None
        self.attempts = 0  # fetches started, whatever came of them

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    async def key(self, kid: str) -> RSAPublicKey:
        """The key of ``kid``; TokenRefused when the issuer does not publish it, KeysUnavailable
        when that cannot be known now."""
        now = self._clock()
        key = self._keys.get(kid)
        if key is not None:
            if self._fetched_at is not None and now - self._fetched_at >= self._max_age and self._may_retry(now):
                self._start_fetch()  # in the background: the cached key serves meanwhile
            return key
        if self._fetched_at is None:
            # Nothing fetched yet (first use, or the issuer was down so far).
            if self._fetch is None and not self._may_retry(now):
                raise KeysUnavailable(f"The OIDC issuer {self.issuer} could not be reached; retry shortly.")
            fetched = await self._fetched()
        elif self._fetch is not None:
            fetched = await self._fetched()
        elif self._refetched_for_kid_at is None or now - self._refetched_for_kid_at >= self._refetch_interval:
            self._refetched_for_kid_at = now
            fetched = await self._fetched()
        else:
            raise TokenRefused(
                "kid",
                f"The OIDC issuer publishes no key {kid!r} (its keys were fetched again less than "
                f"{self._refetch_interval:g} s ago).",
            )
        key = self._keys.get(kid)
        if key is not None:
            return key
        if not fetched:
            raise KeysUnavailable(f"The OIDC issuer {self.issuer}'s keys could not be fetched; retry shortly.")
        raise TokenRefused("kid", f"The OIDC issuer publishes no key {kid!r}.")

    async def settled(self) -> None:
        """Wait for a fetch under way, if there is one (a refresh in the background)."""
        if self._fetch is not None:
            await asyncio.shield(self._fetch)

    async def close(self) -> None:
        if self._fetch is not None:
            self._fetch.cancel()
            await asyncio.gather(self._fetch, return_exceptions=True)

    def _may_retry(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._retry_interval

    def _start_fetch(self) -> asyncio.Task[bool]:
        if self._fetch is None:
            self._attempted_at = self._clock()
            self.attempts += 1
            self._fetch = asyncio.create_task(self._run_fetch(), name="oidc-keys-fetch")
        return self._fetch

    async def _fetched(self) -> bool:
        """Wait for the fetch under way (starting one if none is); True when it succeeded. Shielded:
        a callback that gives up does not cancel the fetch others wait for."""
        return await asyncio.shield(self._start_fetch())

    async def _run_fetch(self) -> bool:
        try:
            keys = await self._download()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The keys held stay in use; the discovery document is read again next time, in case
            # the JWKS moved.
            self._jwks_uri = None
            held = f"keeping the {len(self._keys)} keys fetched before" if self._keys else "no keys held yet"
            log.warning("Could not fetch the keys of OIDC issuer %s (%s): %s", self.issuer, held, _reason(exc))
            return False
        finally:
            self._fetch = None
        self._keys = keys
        self._fetched_at = self._clock()
        log.info("Fetched %d signing keys of OIDC issuer %s: %s.", len(keys), self.issuer, ", ".join(sorted(keys)))
        return True

    async def _download(self) -> dict[str, RSAPublicKey]:
        if self._jwks_uri is None:
            discovery = await self._get_json(self.issuer.rstrip("/") + DISCOVERY_PATH)
            if discovery.get("issuer") != self.issuer:
                raise ValueError(f"the discovery document names issuer {discovery.get('issuer')!r}")
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not _secure(jwks_uri):
                raise ValueError(f"the discovery document's jwks_uri is not an https URL: {jwks_uri!r}")
            self._jwks_uri = jwks_uri
        document = await self._get_json(self._jwks_uri)
        keys = _signing_keys(document)
        if not keys:
            raise ValueError("the JWKS holds no RSA key for RS256")
        return keys

    async def _get_json(self, url: str) -> dict[str, Any]:
        response = await self._client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > MAX_DOCUMENT_BYTES:
            raise ValueError(f"{url} answered {len(response.content)} bytes, more than a key document")
        document = response.json()
        if not isinstance(document, dict):
            raise ValueError(f"{url} did not answer a JSON object")
        return document


def _signing_keys(document: dict[str, Any]) -> dict[str, RSAPublicKey]:
    """The RSA keys of a JWKS that may verify RS256 signatures, by kid; others are skipped."""
    found: dict[str, RSAPublicKey] = {}
    entries = document.get("keys")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA" or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", ALGORITHM) != ALGORITHM:
            continue
        try:
            key = jwt.PyJWK(entry, algorithm=ALGORITHM).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
        if isinstance(key, RSAPublicKey):
            found[entry["kid"]] = key
    return found


def _secure(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.hostname) and (
        parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname or ""))
    )


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"{exc.request.url} answered HTTP {exc.response.status_code}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class OidcVerifier:
    """A callback's bearer token checked against the settings: the workflow it proves, if the policy
    lets it call. Raises TokenRefused (401), PolicyRefused (403) or KeysUnavailable (503)."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient, *, keys: IssuerKeys | None = None) -> None:
        if settings.oidc_audience is None:
            raise ValueError("OIDC needs HUB_OIDC_AUDIENCE.")
        self.audience = settings.oidc_audience
        self.issuer = settings.oidc_issuer
        self.repositories = frozenset(settings.oidc_repositories)
        self.keys = keys or IssuerKeys(settings.oidc_issuer, client)
        self._client = client

    async def verify(self, token: str) -> Workflow:
        kid = key_id(token)
        key = await self.keys.key(kid)
        claims = verified_claims(token, key, issuer=self.issuer, audience=self.audience, now=time.time())
        return workflow_of(claims, self.repositories)

    async def close(self) -> None:
        await self.keys.close()
        await self._client.aclose()


def open_verifier(settings: Settings) -> OidcVerifier | None:
    """The process's verifier when OIDC is configured (its own HTTP client, closed with it)."""
    if not settings.oidc_enabled:
        return None
    # No redirects (the issuer's URLs are used as published), a bounded wait, TLS verified.
    client = httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False)
    return OidcVerifier(settings, client)
