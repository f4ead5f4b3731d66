"""Why a database cannot be used at start-up, in a line a user can act on (not a traceback)."""

from __future__ import annotations

import shlex
import socket
from typing import Final

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

# SQLSTATEs Postgres answers a connection with: no such database, or the role or password refused.
_NO_DATABASE: Final = "3D000"
_REFUSED: Final = ("28000", "28P01")
# Postgres starting up, shutting down or out of connections.
_NOT_NOW: Final = ("57P03", "57P01", "57P02", "53300")


def explain_database_error(exc: BaseException, database_url: str) -> str | None:
    """A one-line explanation of ``exc`` met while connecting to ``database_url``, or None when it is
    not a connection problem (then it is a bug, and its traceback is what helps)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if isinstance(exc, sa_exc.OperationalError):
            return (
                f"cannot open the SQLite database {url.database!r} ({exc.orig}); check that its directory "
                "exists and is writable, or set HUB_DATABASE_URL."
            )
        return None
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the database host {url.host!r} ({exc.strerror}); check HUB_DATABASE_URL."
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"cannot reach Postgres at {where}: connection refused. Is it running, and is HUB_DATABASE_URL's "
            "host and port right?"
        )
    if isinstance(exc, (TimeoutError, OSError)) and not isinstance(exc, sa_exc.SQLAlchemyError):
        return (
            f"cannot reach Postgres at {where} ({type(exc).__name__}: {exc}); check HUB_DATABASE_URL and the network."
        )
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if sqlstate == _NO_DATABASE:
        create = shlex.join(
            ["createdb", "-h", url.host or "localhost", "-p", str(url.port or 5432)]
            + (["-U", url.username] if url.username else [])
            + [url.database or ""]
        )
        return f"the database {url.database!r} does not exist on {where}; create it: {create}"
    if sqlstate in _REFUSED:
        return (
            f"Postgres at {where} refused user {url.username!r} ({_first_line(exc)}); check the user and "
            "password in HUB_DATABASE_URL, and pg_hba.conf."
        )
    if sqlstate in _NOT_NOW:
        return f"Postgres at {where} cannot take connections now ({_first_line(exc)}); try again shortly."
    return None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__
