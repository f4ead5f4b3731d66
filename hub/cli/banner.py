"""What ``serve`` prints on the embedded default: how to reach the hub, with the secrets made for this run."""

from __future__ import annotations

import json
import logging
import shlex

from hub.domain.signatures import STANDARD_PREFIX, standard_key
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
            *([f"  HUB_WEBHOOK_SECRET={settings.webhook_secret}"] if settings.signatures_enabled else []),
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
            *_callback_example(settings, base, body),
        ]
    )


def _callback_example(settings: Settings, base: str, body: str) -> list[str]:
    """A callback signed with Standard Webhooks by curl and openssl, or what to send instead when
    only OIDC tokens are accepted."""
    if not settings.signatures_enabled:
        return [
            "Workflow callbacks: GitHub Actions OIDC tokens only (Authorization: Bearer <token>, audience "
            f"{settings.oidc_audience}); see examples/github-actions/provision-oidc.yml.",
            "",
        ]
    return [
        "Send a signed workflow callback (Standard Webhooks; replace <jobId> with the jobId the provision "
        "call returned):",
        f"  body={shlex.quote(body)}",
        "  id=msg_$(openssl rand -hex 12); ts=$(date +%s)",
        f'  sig=$(printf \'%s.%s.%s\' "$id" "$ts" "$body" | {hmac_command(settings.webhook_secret)} | base64)',
        f'  curl -s -X POST {base}/api/webhooks/github -H "webhook-id: $id" -H "webhook-timestamp: $ts" '
        '-H "webhook-signature: v1,$sig" -H \'Content-Type: application/json\' -d "$body"',
        "",
    ]


def hmac_command(secret: str) -> str:
    """The openssl command that prints the binary HMAC-SHA256 of its input under the Standard
    Webhooks key of ``secret`` (a whsec_ secret's decoded bytes, given in hex; any other as it is)."""
    if secret.startswith(STANDARD_PREFIX):
        return f"openssl dgst -sha256 -mac HMAC -macopt hexkey:{standard_key(secret).hex()} -binary"
    return f"openssl dgst -sha256 -hmac {shlex.quote(secret)} -binary"
