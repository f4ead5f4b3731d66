"""Who may do what: dashboard tokens (HS256 JWTs whose ``sub`` is the owner id) and the admin token."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Any

import jwt
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

BEARER = "bearer "
SUBPROTOCOL = "status-hub.v1"
TOKEN_SUBPROTOCOL_PREFIX = "bearer."
COOKIE_NAME = "status_hub_token"


class Unauthenticated(Exception):
    """No credentials, or credentials that do not verify. The message never contains the token."""


@dataclass(frozen=True, slots=True)
class Viewer:
    owner_id: str


def bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization[: len(BEARER)].lower() == BEARER:
        return authorization[len(BEARER) :].strip() or None
    return None


def verify_dashboard_token(secret: str, token: str) -> Viewer:
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("The token has expired.") from None
    except jwt.InvalidTokenError:
        raise Unauthenticated("The token is not a valid HS256 token signed for this hub.") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("The token's sub claim must be the owner id, a non-empty string.")
    return Viewer(owner_id=subject)


def is_admin(admin_token: str, authorization: str | None) -> bool:
    token = bearer_token(authorization)
    return token is not None and hmac.compare_digest(token.encode(), admin_token.encode())


def issue_dashboard_token(secret: str, owner_id: str, *, ttl_seconds: int = 12 * 3600) -> str:
    """What the main application does; the hub uses it for the embedded default and the demo."""
    now = int(time.time())
    return jwt.encode({"sub": owner_id, "iat": now, "exp": now + ttl_seconds}, secret, algorithm="HS256")


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
    """Guard for the main application's service-to-service calls."""
    settings = connection.app.state.settings
    if not is_admin(settings.admin_token, connection.headers.get("authorization")):
        raise NotAuthorizedException(
            "This endpoint needs the admin token: Authorization: Bearer <HUB_ADMIN_TOKEN>.",
            headers={"WWW-Authenticate": 'Bearer realm="status-hub-admin"'},
        )


async def provide_viewer(request: Request[Any, Any, Any]) -> Viewer:
    """Dependency: the dashboard owner behind ``Authorization: Bearer <jwt>``, or the
    ``status_hub_token`` cookie the main application may set HttpOnly (401 otherwise). Only the
    read endpoints use it, and a cross-site page cannot read their answers, so a cookie is safe here."""
    token = bearer_token(request.headers.get("authorization")) or request.cookies.get(COOKIE_NAME) or None
    if token is None:
        raise NotAuthorizedException(
            f"A dashboard token is required: Authorization: Bearer <jwt> or the {COOKIE_NAME} cookie.",
            headers={"WWW-Authenticate": 'Bearer realm="status-hub"'},
        )
    try:
        return verify_dashboard_token(request.app.state.settings.jwt_secret, token)
    except Unauthenticated as exc:
        raise NotAuthorizedException(
            str(exc), headers={"WWW-Authenticate": 'Bearer realm="status-hub", error="invalid_token"'}
        ) from None


ViewerDep = NamedDependency[Viewer]
