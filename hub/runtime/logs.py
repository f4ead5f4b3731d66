"""How the process's log lines look (``HUB_LOG_FORMAT``): one formatter for the hub's loggers and
uvicorn's alike, either text for a terminal or one JSON object per line for a log pipeline.

A line carries ``agent_id``, ``job_id`` and ``delivery_id`` when the call passed them
(``log.info(..., extra=log_fields(job_id=...))``), and ``replica`` (``hostname:pid``) in JSON. Both
formats scrub credentials from every line: the hub never logs one, but libraries do at DEBUG
(uvicorn's websocket protocol prints every handshake header, ``Authorization`` included)."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from datetime import UTC, datetime
from typing import Any, Final

# The fields a line carries when the call knows them, in the order they are shown.
CONTEXT_FIELDS: Final = ("agent_id", "job_id", "delivery_id")
# Lines written through this logger are shown as they are: the embedded default's banner shows the
# secrets generated for the run (and a dashboard link with a token) on purpose.
VERBATIM_LOGGER: Final = "hub.cli.banner"

_REDACTED: Final = "[redacted]"
# Credentials as they travel: a bearer token (header or ``bearer.<jwt>`` subprotocol; a GitHub Actions
# OIDC token too), the dashboard cookie, any JWT, a callback signature (X-Hub-Signature-256's
# ``sha256=<hex>``, Standard Webhooks' ``v1,<base64>``), a Standard Webhooks secret (``whsec_``), the
# password of a URL.
_CREDENTIALS: Final = re.compile(
    r"(?P<keep>(?i:\bbearer[ .])|status_hub_token=|sha256=(?=[0-9a-fA-F]{16})|\bv1,(?=[A-Za-z0-9+/]{16})"
    r"|\bwhsec_(?=[A-Za-z0-9+/]{8})|://[^/\s:@]+:(?=[^/\s@]+@))"
    r"(?P<secret>[^\s,;\"'@\\]+)"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)"
)


def log_fields(*, agent_id: object = None, job_id: object = None, delivery_id: object = None) -> dict[str, str]:
    """``extra`` for a log call about an agent or a callback; what is None is left out."""
    given = {"agent_id": agent_id, "job_id": job_id, "delivery_id": delivery_id}
    return {name: str(value) for name, value in given.items() if value is not None}


_replica: dict[int, str] = {}


def replica_id() -> str:
    """This process among the hub's replicas and workers: ``hostname:pid`` (the pod's name on Kubernetes)."""
    pid = os.getpid()
    cached = _replica.get(pid)
    if cached is None:
        cached = _replica[pid] = f"{socket.gethostname()}:{pid}"
    return cached


def redact(text: str) -> str:
    """``text`` with every credential it carries replaced by ``[redacted]``."""
    if not _CREDENTIALS.search(text):
        return text
    return _CREDENTIALS.sub(_replace, text)


def _replace(match: re.Match[str]) -> str:
    if match.group("jwt") is not None:
        return _REDACTED
    return match.group("keep") + _REDACTED


def _context(record: logging.LogRecord) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            found[name] = str(value)
    return found


def _printable(value: str) -> str:
    # A delivery id comes from a request header: no control character may start a fake line.
    return value if value.isprintable() else ascii(value)


class TextFormatter(logging.Formatter):
    """``2026-12-02 10:00:00,123 INFO hub.http.webhooks: message [job_id=... delivery_id=...]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = _context(record)
        if context:
            shown = " ".join(f"{name}={_printable(value)}" for name, value in context.items())
            # Appended after the first line, so a traceback stays below it.
            head, newline, rest = line.partition("\n")
            line = f"{head} [{shown}]{newline}{rest}"
        return line if record.name == VERBATIM_LOGGER else redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    ``replica``, the context fields the call passed, and ``exc_info`` (the traceback) for an exception.
    uvicorn's access lines also get ``client``, ``method``, ``path`` and ``status``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "replica": replica_id(),
            **_context(record),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, _, status = record.args
            entry.update(client=str(client), method=str(method), path=str(path), status=status)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        if record.name != VERBATIM_LOGGER:
            # Each value before encoding: a substitution in the encoded line could break its escapes.
            entry = {key: redact(value) if isinstance(value, str) else value for key, value in entry.items()}
        # json escapes newlines (and any control character): a traceback stays on its one line.
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)
