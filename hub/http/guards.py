"""Litestar's side of who may do what: the admin guard and the dashboard viewer dependency."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from hub.domain.tokens import COOKIE_NAME, Unauthenticated, Viewer, bearer_token, is_admin
from hub.runtime import Hub, HubDep


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
    """Guard for the main application's service-to-service calls."""
    settings = connection.app.state.settings
    if not is_admin(settings.admin_token, connection.headers.get("authorization")):
        raise NotAuthorizedException(
            "This endpoint needs the admin token: Authorization: Bearer <HUB_ADMIN_TOKEN>.",
            headers={"WWW-Authenticate": 'Bearer realm="status-hub-admin"'},
        )


def request_viewer(request: Request[Any, Any, Any], hub: Hub) -> Viewer:
    """The dashboard owner behind ``Authorization: Bearer <jwt>``, or the ``status_hub_token`` cookie
    the main application may set HttpOnly (401 otherwise). Only the read endpoints use it, and a
    cross-site page cannot read their answers, so a cookie is safe here."""
    token = bearer_token(request.headers.get("authorization")) or request.cookies.get(COOKIE_NAME) or None
    if token is None:
        raise NotAuthorizedException(
            f"A dashboard token is required: Authorization: Bearer <jwt> or the {COOKIE_NAME} cookie.",
            headers={"WWW-Authenticate": 'Bearer realm="status-hub"'},
        )
    try:
        return hub.tokens.verify(token)
    except Unauthenticated as exc:
        raise NotAuthorizedException(
            str(exc), headers={"WWW-Authenticate": 'Bearer realm="status-hub", error="invalid_token"'}
        ) from None


def provide_viewer(request: Request[Any, Any, Any], hub: HubDep) -> Viewer:
    """Dependency: request_viewer. It takes the hub as a dependency of its own, so Litestar resolves
    the two one after the other; independent ones it resolves in a task group, a task each."""
    return request_viewer(request, hub)


ViewerDep = NamedDependency[Viewer]
