"""What ``serve`` prints on the embedded default: how to reach the hub, with the secrets made for this run."""

from __future__ import annotations

import json
import logging
import shlex

from hub.domain.signatures import sign
from hub.domain.tokens import issue_dashboard_token
from hub.settings import Settings

# Configured to show these lines verbatim, whatever HUB_LOG_LEVEL says (hub.runtime.logs.VERBATIM_LOGGER).
log = logging.getLogger(__name__)


def log_lines(text: str) -> None:
    """A banner as log lines, one each, so the stream keeps one format (all JSON, with
    HUB_LOG_FORMAT=json)."""
    for line in text.splitlines():
        if line.strip():
            log.info(line.strip())


def serving(settings: Settings, host: str, port: int) -> str:
    """What ``serve`` prints when the secrets are set: where the hub is, never a secret."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    base = settings.public_url or f"http://{shown}:{port}"
    return "\n".join(
        [
            "",
            f"status-hub is serving on {host}:{port}"
            + (f" (public URL {settings.public_url})" if settings.public_url else ""),
            f"  API and its OpenAPI document: {base}/schema",
            f"  Probes: {base}/livez, {base}/readyz; metrics: {base}/metrics",
            "  A dashboard link for an owner (signed with HUB_JWT_SECRET): status-hub token --owner <ownerId> --link",
            "",
        ]
    )


def welcome(settings: Settings, host: str, port: int) -> str:
    """How to reach a hub running on the embedded default, with the secrets made for this run."""
    base = f"http://{host}:{port}"
    token = issue_dashboard_token(settings.jwt_secret, "demo-owner")
    body = json.dumps({"job_id": "<jobId>", "status": "provisioning", "step": "vm_created"}, separators=(",", ":"))
    return "\n".join(
        [
            "",
            f"status-hub is running on the embedded default at {base}",
            f"  database: {settings.database_url} (SQLite file); broker: in-memory (one process)",
            f"  generated for this run (set them to keep them): {', '.join(settings.generated_secrets)}",
            f"  HUB_WEBHOOK_SECRET={settings.webhook_secret}",
            f"  HUB_JWT_SECRET={settings.jwt_secret}",
            f"  HUB_ADMIN_TOKEN={settings.admin_token}",
            "",
            "Dashboard for owner demo-owner:",
            f"  {base}/#token={token}",
            f"API and its OpenAPI document: {base}/schema",
            "",
            "Create an agent and start provisioning it (admin API):",
            f"  curl -s -X POST {base}/api/agents -H 'Authorization: Bearer {settings.admin_token}' "
            '-H \'Content-Type: application/json\' -d \'{"ownerId":"demo-owner","name":"my-agent"}\'',
            f"  curl -s -X POST {base}/api/agents/<agentId>/provision "
            f"-H 'Authorization: Bearer {settings.admin_token}'",
            "",
            "Send a signed workflow callback (replace <jobId> with the jobId the provision call returned):",
            f"  body={shlex.quote(body)}",
            f'  sig=$(printf %s "$body" | openssl dgst -sha256 -hmac {shlex.quote(settings.webhook_secret)} '
            "| sed 's/^.* //')",
            f'  curl -s -X POST {base}/api/webhooks/github -H "X-Hub-Signature-256: sha256=$sig" '
            "-H 'Content-Type: application/json' -d \"$body\"",
            "",
            f"(example signature of that exact body: {sign(settings.webhook_secret, body.encode())})",
            "",
        ]
    )
