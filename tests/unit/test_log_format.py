"""The log formatters (HUB_LOG_FORMAT): JSON one object per line, context fields, tracebacks, and
credentials scrubbed from every line."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from datetime import datetime
from typing import Any

import pytest

from hub.domain.signatures import sign, sign_standard, standard_webhook
from hub.process_setup import logging_config
from hub.runtime.logs import JsonFormatter, TextFormatter, log_fields, redact, replica_id
from tests.support.api import token_for

JWT = token_for("owner-1")
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_SIGNATURE = sign_standard(standard_webhook(STANDARD_SECRET), "msg_1", 1_700_000_000, b"{}")[
    "webhook-signature"
]
# An RS256 JWT as GitHub Actions mints them (header, claims and signature alike in shape).
OIDC_TOKEN = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImtleS0xIiwidHlwIjoiSldUIn0."
    "eyJpc3MiOiJodHRwczovL3Rva2VuLmFjdGlvbnMuZ2l0aHVidXNlcmNvbnRlbnQuY29tIiwicmVwb3NpdG9yeV9pZCI6IjEwMDEifQ."
    "c2lnbmF0dXJlLW9mLXRoZS1pc3N1ZXItcnNhLWtleQ"
)


def _record(message: str, *args: object, name: str = "hub.test", **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, message, args or None, None)
    record.__dict__.update(extra)
    return record


def _failed_record() -> logging.LogRecord:
    try:
        raise ValueError("boom\nwith a second line")
    except ValueError:
        record = logging.LogRecord("hub.test", logging.ERROR, __file__, 1, "It failed.", None, sys.exc_info())
    return record


def test_a_json_line_has_the_required_keys_and_the_context_it_was_given() -> None:
    record = _record("Applied a callback (%s).", "status running", **log_fields(job_id="job-1", delivery_id="d-1"))
    entry = json.loads(JsonFormatter().format(record))
    assert entry == {
        "ts": entry["ts"],
        "level": "INFO",
        "logger": "hub.test",
        "message": "Applied a callback (status running).",
        "replica": f"{socket.gethostname()}:{os.getpid()}",
        "job_id": "job-1",
        "delivery_id": "d-1",
    }
    assert entry["ts"].endswith("Z")
    assert datetime.fromisoformat(entry["ts"]).timestamp() == pytest.approx(record.created, abs=0.001)
    assert replica_id() == entry["replica"]


def test_an_exception_is_one_json_line_with_its_traceback() -> None:
    line = JsonFormatter().format(_failed_record())
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "It failed."
    assert entry["exc_info"].startswith("Traceback (most recent call last):")
    assert "ValueError: boom\nwith a second line" in entry["exc_info"]


def test_uvicorn_access_lines_carry_the_request_as_fields() -> None:
    record = _record('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/healthz", "1.1", 200, name="uvicorn.access")
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == '127.0.0.1:5000 - "GET /healthz HTTP/1.1" 200'
    assert (entry["client"], entry["method"], entry["path"], entry["status"]) == (
        "127.0.0.1:5000",
        "GET",
        "/healthz",
        200,
    )


def test_text_lines_show_the_context_after_the_message_and_before_a_traceback() -> None:
    record = _failed_record()
    record.__dict__.update(log_fields(agent_id="a-1"))
    head, _, rest = TextFormatter().format(record).partition("\n")
    assert head.endswith("ERROR hub.test: It failed. [agent_id=a-1]")
    assert rest.startswith("Traceback")


def test_a_delivery_id_cannot_start_a_line_of_its_own_in_text() -> None:
    record = _record("Refused a callback.", **log_fields(delivery_id="x\n2026-01-01 INFO forged"))
    assert "\n" not in TextFormatter().format(record)


@pytest.mark.parametrize(
    "leaky",
    [
        f"< authorization: Bearer {JWT}",
        "< authorization: Bearer test-admin-token-0123456789",
        f"< sec-websocket-protocol: status-hub.v1, bearer.{JWT}",
        f"< cookie: theme=dark; status_hub_token={JWT}; other=1",
        f"http://hub/#token={JWT}",
        f"X-Hub-Signature-256: {sign('test-webhook-secret-0123456789', b'{}')}",
        "postgresql+asyncpg://hub:s3cret-password@db:5432/hub",
        f"< webhook-signature: {STANDARD_SIGNATURE}",
        f"< webhook-signature: v1,bm90LXRoZS1zaWduYXR1cmUtYXQtYWxs {STANDARD_SIGNATURE}",
        f"HUB_WEBHOOK_SECRET={STANDARD_SECRET}",
        f"< authorization: Bearer {OIDC_TOKEN}",
        f"The token {OIDC_TOKEN} was refused.",
    ],
)
def test_credentials_are_scrubbed_from_both_formats(leaky: str) -> None:
    secrets = (
        JWT,
        "test-admin-token-0123456789",
        "s3cret-password",
        sign("test-webhook-secret-0123456789", b"{}"),
        STANDARD_SIGNATURE.removeprefix("v1,"),
        STANDARD_SECRET.removeprefix("whsec_"),
        OIDC_TOKEN,
    )
    for formatter in (TextFormatter(), JsonFormatter()):
        line = formatter.format(_record("%s", leaky))
        assert "[redacted]" in line
        assert not any(secret in line for secret in secrets), line
        assert not any(secret.removeprefix("sha256=") in line for secret in secrets), line


def test_what_is_not_a_credential_is_left_alone() -> None:
    for text in (
        "Missing or invalid X-Hub-Signature-256: expected sha256=<hex HMAC-SHA256 of the raw body>.",
        "postgresql+asyncpg://postgres@127.0.0.1:5432/hub",
        "< host: 127.0.0.1:8000",
        "A dashboard token is required.",
        "webhook-timestamp is more than 5 minutes from the hub's clock",
        "expected v1,<base64 HMAC-SHA256 of webhook-id.webhook-timestamp.body>.",
        "The OIDC token failed the aud check: The OIDC token's audience (aud) must be 'status-hub'.",
    ):
        assert redact(text) == text


def test_a_scrubbed_json_line_stays_valid_json() -> None:
    line = JsonFormatter().format(_record('said "Bearer abc" and "bearer.x"'))
    assert json.loads(line)["message"] == 'said "Bearer [redacted]" and "bearer.[redacted]"'


def test_the_banner_is_shown_verbatim() -> None:
    # The embedded default's banner shows the secrets generated for the run and a dashboard link.
    record = _record("http://127.0.0.1:8000/#token=%s", JWT, name="hub.cli.banner")
    assert JWT in TextFormatter().format(record)
    assert JWT in JsonFormatter().format(record)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_uvicorn_and_the_hub_share_one_handler_and_formatter(log_format: str) -> None:
    config = logging_config("DEBUG", log_format)
    assert list(config["handlers"]) == ["hub"]
    assert config["root"] == {"handlers": ["hub"], "level": "DEBUG"}
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        assert config["loggers"][name] == {"handlers": [], "propagate": True}
    formatter = config["formatters"]["hub"]["()"]
    assert formatter.endswith({"text": "TextFormatter", "json": "JsonFormatter"}[log_format])
