"""A provisioning workflow's callbacks, signed and sent over HTTP: ``status-hub simulate`` and the demo.

Each callback is signed with Standard Webhooks under HUB_WEBHOOK_SECRET: a ``webhook-id`` that stays
the same across retries (the hub's delivery id, so a retried callback is applied once) and a
``webhook-timestamp`` of each attempt, which the hub refuses once it is 5 minutes old."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from hub.domain.signatures import sign_standard, standard_webhook
from hub.domain.steps import WORKFLOW_STEPS

WEBHOOK_PATH: Final = "/api/webhooks/github"
# What a workflow reports, in order: started, the four workflow steps, then running with metadata.
CALLBACKS: Final = ("provisioning", *WORKFLOW_STEPS, "running")
ONE_OFF: Final = (*CALLBACKS, "heartbeat", "failed")
# Where a run may stop on purpose, as a workflow that is cancelled or loses its runner does: any
# callback before running (a run that reported running has finished, it cannot stall midway).
STOP_POINTS: Final = CALLBACKS[:-1]
FAILURES: Final[dict[str, str]] = {
    "provisioning": "The cloud API refused to create the VM: instance quota exceeded in eu-west-1.",
    "vm_created": "The VM did not answer on SSH within 120 s after boot.",
    "network_configured": "Attaching the private network failed: no free address in subnet 10.0.0.0/24.",
    "ansible_started": "Ansible failed: TASK [agent : install runtime] could not fetch packages (mirror answered 503).",
    "ansible_complete": "The agent service did not become healthy within 60 s after Ansible finished.",
    "running": "The agent reported healthy, then exited with code 137 (out of memory).",
}
Log = Callable[[str], None]


def callback_body(job_id: str, name: str, *, error: str | None = None) -> dict[str, Any]:
    """The body of one named callback: a CALLBACKS entry, ``heartbeat`` or ``failed``."""
    metadata = instance_metadata(job_id)
    if name == "heartbeat":
        return {"job_id": job_id, "type": "heartbeat"}
    if name == "failed":
        return {"job_id": job_id, "status": "failed", "error": error or "The provisioning workflow failed."}
    if name == "provisioning":
        return {"job_id": job_id, "status": "provisioning"}
    if name == "running":
        return {"job_id": job_id, "status": "running", "metadata": metadata}
    if name == "vm_created":
        return {
            "job_id": job_id,
            "status": "provisioning",
            "step": name,
            "metadata": {"server_id": metadata["server_id"]},
        }
    if name in WORKFLOW_STEPS:
        return {"job_id": job_id, "status": "provisioning", "step": name}
    raise ValueError(f"Unknown callback {name!r}; expected one of {', '.join(ONE_OFF)}.")


def workflow(
    job_id: str, *, fail_at: str | None = None, error: str | None = None, stop_after: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Every callback of one run, in order. With ``fail_at``, the callbacks before that one, then a
    failure reported at it (its step named, so the dashboard shows where it broke). With
    ``stop_after``, the callbacks up to and including that one, and then nothing: the run goes
    silent the way a cancelled job or a lost runner does, so the hub's stall detection has
    something to find."""
    if fail_at is not None and fail_at not in CALLBACKS:
        raise ValueError(f"fail_at must be one of {', '.join(CALLBACKS)}; got {fail_at!r}.")
    if stop_after is not None and stop_after not in STOP_POINTS:
        raise ValueError(f"stop_after must be one of {', '.join(STOP_POINTS)}; got {stop_after!r}.")
    if fail_at is not None and stop_after is not None:
        raise ValueError("A run either fails (fail_at) or stops (stop_after); got both.")
    run: list[tuple[str, dict[str, Any]]] = []
    for name in CALLBACKS:
        if name == fail_at:
            failure = {"job_id": job_id, "status": "failed", "error": error or FAILURES[name]}
            if name in WORKFLOW_STEPS:
                failure["step"] = name
            run.append(("failed", failure))
            break
        run.append((name, callback_body(job_id, name)))
        if name == stop_after:
            break
    return run


def instance_metadata(job_id: str) -> dict[str, str]:
    """Plausible VM metadata, the same for every callback of one job."""
    rng = random.Random(job_id)
    return {
        "server_id": f"srv-{rng.randrange(16**8):08x}",
        "ip_address": f"10.0.{rng.randrange(1, 255)}.{rng.randrange(2, 255)}",
        "region": rng.choice(("eu-west-1", "us-east-2", "ap-south-1")),
        "agent_version": "2.14.1",
    }


class Sender:
    """Signs (Standard Webhooks) and posts callbacks. Retries server errors (5xx) and connection
    errors with capped, jittered backoff, under one ``webhook-id`` so the hub applies a retried
    callback once; each attempt is signed with its own timestamp."""

    def __init__(
        self, client: httpx.AsyncClient, secret: str, *, attempts: int = 5, backoff: float = 0.5, log: Log = print
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1; got {attempts}.")
        self._client = client
        # ValueError for a whsec_ secret that is not base64.
        self._webhook = standard_webhook(secret)
        self._attempts = attempts
        self._backoff = backoff
        self._log = log

    async def send(self, body: Mapping[str, Any]) -> httpx.Response:
        raw = json.dumps(body, separators=(",", ":")).encode()
        delivery = f"msg_{uuid.uuid4().hex}"
        for attempt in range(1, self._attempts + 1):
            retry_after: str | None = None
            headers = {
                "Content-Type": "application/json",
                **sign_standard(self._webhook, delivery, int(time.time()), raw),
            }
            try:
                response = await self._client.post(WEBHOOK_PATH, content=raw, headers=headers)
            except httpx.TransportError as exc:
                if attempt == self._attempts:
                    raise
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 500 or attempt == self._attempts:
                    return response
                reason = f"HTTP {response.status_code}"
                retry_after = response.headers.get("retry-after")
            delay = self._delay(attempt, retry_after)
            self._log(f"  attempt {attempt} failed ({reason}); retrying in {delay:.1f} s")
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None and retry_after.isdigit():
            return min(float(retry_after), 30.0)
        ceiling = min(self._backoff * 2.0 ** (attempt - 1), 10.0)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True, slots=True)
class Sent:
    accepted: bool  # every callback was answered 2xx
    applied: int  # how many changed the agent's status


async def send_all(
    sender: Sender, callbacks: list[tuple[str, dict[str, Any]]], *, pause: Callable[[], float], log: Log = print
) -> Sent:
    """Send callbacks in order with a pause between them; stop at the first refusal (4xx)."""
    applied = 0
    for index, (name, body) in enumerate(callbacks):
        if index:
            await asyncio.sleep(pause())
        response = await sender.send(body)
        log(f"{name:<19} {response.status_code} {response.text}")
        if response.status_code >= 400:
            return Sent(accepted=False, applied=applied)
        applied += bool(response.json().get("applied"))
    return Sent(accepted=True, applied=applied)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="The hub's base URL, e.g. http://127.0.0.1:8000.")
    parser.add_argument("--job", required=True, help="The jobId returned by POST /api/agents/{id}/provision.")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--step", choices=ONE_OFF, help="Send only this one callback.")
    which.add_argument("--fail-at", choices=CALLBACKS, help="Run the workflow up to this callback, then fail there.")
    which.add_argument(
        "--stop-after",
        choices=STOP_POINTS,
        help="Run the workflow up to and including this callback, then send nothing more (no running, no "
        "heartbeats), as a cancelled job would: the hub marks it stalled after HUB_STALL_AFTER seconds.",
    )
    parser.add_argument("--error", help="The failure message (with --fail-at or --step failed).")
    parser.add_argument("--delay", type=float, default=1.0, help="Seconds between callbacks (default 1).")


def run(args: argparse.Namespace) -> int:
    if args.error is not None and args.stop_after is not None:
        print("status-hub simulate: --error goes with --fail-at or --step failed, not --stop-after.", file=sys.stderr)
        return 2
    secret = os.environ.get("HUB_WEBHOOK_SECRET", "")
    if not secret:
        print(
            "status-hub simulate: HUB_WEBHOOK_SECRET is not set; export the hub's webhook secret so the "
            "callbacks can be signed.",
            file=sys.stderr,
        )
        return 2
    try:
        standard_webhook(secret)
    except ValueError as exc:
        print(f"status-hub simulate: HUB_WEBHOOK_SECRET is not usable: {exc}.", file=sys.stderr)
        return 2
    if not args.url.startswith(("http://", "https://")):
        print(f"status-hub simulate: --url must start with http:// or https://; got {args.url!r}.", file=sys.stderr)
        return 2
    if args.delay < 0:
        print(f"status-hub simulate: --delay must be 0 or more seconds; got {args.delay}.", file=sys.stderr)
        return 2
    if args.step is not None:
        callbacks = [(args.step, callback_body(args.job, args.step, error=args.error))]
    else:
        callbacks = workflow(args.job, fail_at=args.fail_at, error=args.error, stop_after=args.stop_after)
    try:
        sent = asyncio.run(_simulate(args.url, secret, callbacks, args.delay))
    except httpx.TransportError as exc:
        print(f"status-hub simulate: could not reach {args.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if not sent.accepted:
        return 1
    if sent.applied == 0:
        print(
            f"status-hub simulate: the hub applied none of the {len(callbacks)} callbacks (each answered "
            '"applied": false): the job has finished or its agent was provisioned again; provision it anew.',
            file=sys.stderr,
        )
        return 1
    if args.stop_after is not None:
        print(
            f"status-hub simulate: stopped after {args.stop_after} on purpose: this run sends nothing more "
            "(no running, no heartbeats), so the hub marks it stalled after HUB_STALL_AFTER seconds (300 by "
            "default) and fails it as lost after HUB_FAIL_AFTER (3600). Send the next callback to resume it.",
            file=sys.stderr,
        )
    return 0


async def _simulate(url: str, secret: str, callbacks: list[tuple[str, dict[str, Any]]], delay: float) -> Sent:
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=10.0) as client:
        # Answers go to stdout, retry notes to stderr, so a script can keep the answers apart.
        sender = Sender(client, secret, log=lambda line: print(line, file=sys.stderr))
        return await send_all(sender, callbacks, pause=lambda: delay)
