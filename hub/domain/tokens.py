"""Who may do what: dashboard tokens (HS256 JWTs whose ``sub`` is the owner id) and the admin token. Pure."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

import jwt

BEARER = "bearer "
SUBPROTOCOL = "status-hub.v1"
TOKEN_SUBPROTOCOL_PREFIX = "bearer."
COOKIE_NAME = "status_hub_token"
ALGORITHM = "HS256"
_MISSING = {
    "exp": "The token has no exp claim: dashboard tokens must expire.",
    "sub": "The token has no sub claim: it must be the owner id.",
}


class Unauthenticated(Exception):
    """No credentials, or credentials that do not verify. The message never contains the token."""


@dataclass(frozen=True, slots=True)
class Viewer:
    owner_id: str
    # The token's exp (seconds since the epoch): a socket opened with it is closed then.
    expires_at: float


def bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization[: len(BEARER)].lower() == BEARER:
        return authorization[len(BEARER) :].strip() or None
    return None


def verify_dashboard_token(secret: str, token: str) -> Viewer:
    """The token's viewer; Unauthenticated with a message that says what is wrong with it."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("The token has expired.") from None
    except jwt.ImmatureSignatureError:
        raise Unauthenticated("The token is not valid yet: its nbf or iat is in the future.") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthenticated(_MISSING.get(exc.claim, f"The token has no {exc.claim} claim.")) from None
    except jwt.InvalidAlgorithmError:
        raise Unauthenticated(
            f"The token is signed with {_algorithm(token)}; this hub accepts {ALGORITHM} only."
        ) from None
    except jwt.InvalidSignatureError:
        raise Unauthenticated(
            "The token's signature does not verify: it was not signed with this hub's secret."
        ) from None
    except jwt.DecodeError:
        raise Unauthenticated("The token is not a JWT: expected three base64url parts separated by dots.") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated(f"The token is not valid: {exc}.") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("The token's sub claim must be the owner id, a non-empty string.")
    return Viewer(owner_id=subject, expires_at=float(claims["exp"]))


def _algorithm(token: str) -> str:
    """The algorithm a token's header names (read unverified, only to say it in a message)."""
    try:
        return str(jwt.get_unverified_header(token).get("alg", "no algorithm"))
    except jwt.InvalidTokenError:
        return "an unknown algorithm"


def is_admin(admin_token: str, authorization: str | None) -> bool:
    return bearer_matches(admin_token, authorization)


def bearer_matches(expected: str, authorization: str | None) -> bool:
    """True when ``authorization`` is ``Bearer <expected>``; compared in constant time."""
    token = bearer_token(authorization)
    return token is not None and hmac.compare_digest(token.encode(), expected.encode())


def issue_dashboard_token(secret: str, owner_id: str, *, ttl_seconds: int = 12 * 3600) -> str:
    """What the main application does; the hub uses it for the embedded default and the demo."""
    now = int(time.time())
    return jwt.encode({"sub": owner_id, "iat": now, "exp": now + ttl_seconds}, secret, algorithm=ALGORITHM)


class VerifiedTokens:
    """Dashboard tokens already verified, each until its ``exp``: a poller sends the same token every
    few seconds, and an HS256 verify costs about as much as the rest of a 304. Bounded: past ``size``
    tokens, the oldest is forgotten (and verified again if it comes back)."""

    __slots__ = ("_secret", "_size", "_viewers")

    def __init__(self, secret: str, *, size: int = 10_000) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}.")
        self._secret = secret
        self._size = size
        self._viewers: dict[str, Viewer] = {}

    def __len__(self) -> int:
        return len(self._viewers)

    def verify(self, token: str, *, now: float | None = None) -> Viewer:
        """The token's viewer; Unauthenticated when it does not verify or has expired."""
        now = time.time() if now is None else now
        viewer = self._viewers.get(token)
        if viewer is None:
            viewer = verify_dashboard_token(self._secret, token)
            if len(self._viewers) >= self._size:
                del self._viewers[next(iter(self._viewers))]
            self._viewers[token] = viewer
        if viewer.expires_at <= now:  # as PyJWT decides it: expired at exp itself
            del self._viewers[token]
            raise Unauthenticated("The token has expired.")
        return viewer
