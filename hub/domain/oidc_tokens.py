"""GitHub Actions OIDC tokens as callback credentials: what a token must prove, and the policy on who
may call. Pure: the issuer's keys are fetched by hub.runtime.oidc_verifier and handed in.

A token passes, in this order, each check a refusal names: its ``format`` (a JWT), its ``alg``
(RS256 only: never ``none``, never an HMAC keyed with the public key), its ``kid`` (a key the issuer
publishes), its ``signature``, then the claims ``iss``, ``aud``, ``exp``, ``nbf`` and ``iat``. A
verified token can still be refused by the policy (a 403, not a 401): a repository not listed, an
event that runs code a pull request controls, or a job bound to another repository.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

ALGORITHM: Final = "RS256"
# Seconds of clock difference tolerated between GitHub and the hub on exp, nbf and iat.
CLOCK_LEEWAY: Final = 60
# Events whose workflow runs with code or input from a pull request (a fork's): refused, since a
# token minted there proves the repository but not that its owners wrote what runs.
REFUSED_EVENTS: Final = frozenset({"pull_request_target", "workflow_run"})


class TokenRefused(Exception):
    """The token does not verify (401); ``check`` names the check that failed."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message


class PolicyRefused(Exception):
    """A verified token the policy refuses (403)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Workflow:
    """Who called, as a verified token says it (for the policy and the logs; never the token)."""

    repository_id: int
    repository: str
    event_name: str
    run_id: str
    workflow_ref: str

    def describe(self) -> str:
        return f"{self.repository} (id {self.repository_id}), run {self.run_id}, {self.workflow_ref}"


def key_id(token: str) -> str:
    """The ``kid`` of a token whose header is well formed and names RS256; the key to verify it with
    is the issuer's key of that id."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRefused("format", "The bearer token is not a JWT (header.payload.signature).") from None
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise TokenRefused("alg", f"The OIDC token's alg must be {ALGORITHM}; got {alg!r}.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenRefused("kid", "The OIDC token's header names no key (kid).")
    return kid


def verified_claims(token: str, key: RSAPublicKey, *, issuer: str, audience: str, now: float) -> dict[str, Any]:
    """The claims of ``token`` once its RS256 signature under ``key`` and its registered claims are
    checked; TokenRefused names the first check that failed."""
    try:
        # The signature only (RS256 and nothing else); the claims are checked below, one by one, so a
        # refusal can say which.
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise TokenRefused("signature", "The OIDC token's signature does not verify with the issuer's key.") from None
    except jwt.InvalidAlgorithmError:
        raise TokenRefused("alg", f"The OIDC token's alg must be {ALGORITHM}.") from None
    except jwt.PyJWTError as exc:
        raise TokenRefused("format", f"The OIDC token could not be decoded: {exc}.") from None
    if claims.get("iss") != issuer:
        raise TokenRefused("iss", f"The OIDC token's issuer (iss) must be {issuer}; got {claims.get('iss')!r}.")
    audiences = claims.get("aud")
    if not (audiences == audience or (isinstance(audiences, list) and audience in audiences)):
        raise TokenRefused(
            "aud", f"The OIDC token's audience (aud) must be {audience!r} (HUB_OIDC_AUDIENCE); got {audiences!r}."
        )
    exp, nbf, iat = (_time(claims, name) for name in ("exp", "nbf", "iat"))
    if exp <= now - CLOCK_LEEWAY:
        raise TokenRefused("exp", f"The OIDC token expired (exp) {now - exp:.0f} s ago; mint a new one per callback.")
    if nbf > now + CLOCK_LEEWAY:
        raise TokenRefused("nbf", f"The OIDC token is not valid before (nbf) {nbf - now:.0f} s from now.")
    if iat > now + CLOCK_LEEWAY:
        raise TokenRefused("iat", f"The OIDC token was issued (iat) {iat - now:.0f} s in the future.")
    return claims


def _time(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    # bool is an int in Python, and not a time.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenRefused(name, f"The OIDC token's {name} claim must be a number of seconds; got {value!r}.")
    return float(value)


def workflow_of(claims: Mapping[str, Any], allowed_repositories: frozenset[int]) -> Workflow:
    """The workflow a verified token stands for, if the policy lets it call; PolicyRefused says why not."""
    raw_id = claims.get("repository_id")
    repository = str(claims.get("repository") or "?")
    # GitHub writes the id as a string of digits.
    text = str(raw_id) if isinstance(raw_id, int | str) and not isinstance(raw_id, bool) else ""
    if not (text.isascii() and text.isdigit()):
        raise PolicyRefused("The OIDC token names no numeric repository_id; only GitHub Actions tokens can call.")
    repository_id = int(text)
    if repository_id not in allowed_repositories:
        raise PolicyRefused(
            f"Repository {repository} (id {repository_id}) may not send callbacks: it is not in HUB_OIDC_REPOSITORIES."
        )
    event_name = str(claims.get("event_name") or "")
    if event_name in REFUSED_EVENTS:
        raise PolicyRefused(
            f"Workflows triggered by {event_name} may not send callbacks: they run with input from pull requests."
        )
    return Workflow(
        repository_id=repository_id,
        repository=repository,
        event_name=event_name,
        run_id=str(claims.get("run_id") or "?"),
        workflow_ref=str(claims.get("job_workflow_ref") or claims.get("workflow") or "?"),
    )
