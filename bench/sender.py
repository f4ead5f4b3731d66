"""Signed heartbeat callbacks at a fixed arrival rate (open loop), each with its send time."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from bench.httpclient import HttpPool

_CALLBACK_PATH = "/api/webhooks/github"


class _Reply(msgspec.Struct):
    version: int | None = None


_reply = msgspec.json.Decoder(_Reply)


@dataclass(frozen=True, slots=True)
class Job:
    agent_id: str
    job_id: str


@dataclass(frozen=True, slots=True)
class Sent:
    agent_id: str
    version: int  # 0 when the answer carried none (an error)
    send_ns: int
    http_ns: int
    status: int


def signed_heartbeat(secret: str, job_id: str) -> tuple[bytes, dict[str, str]]:
    body = msgspec.json.encode({"job_id": job_id, "type": "heartbeat"})
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signature,
        "X-GitHub-Delivery": uuid.uuid4().hex,
    }
    return body, headers


async def send_one(pool: HttpPool, secret: str, job: Job) -> Sent:
    body, headers = signed_heartbeat(secret, job.job_id)
    start = time.time_ns()
    try:
        response = await pool.request("POST", _CALLBACK_PATH, body, headers)
    except Exception:
        return Sent(job.agent_id, 0, start, time.time_ns() - start, 599)
    elapsed = time.time_ns() - start
    version = _reply.decode(response.body).version if response.status == 200 else None
    return Sent(job.agent_id, version or 0, start, elapsed, response.status)


async def send_at_rate(
    pool: HttpPool, secret: str, jobs: Sequence[Job], rate: float, duration: float, *, timeout: float = 30.0
) -> list[Sent]:
    """Send ``rate`` callbacks per second for ``duration`` s, round-robin over ``jobs``.

    Arrivals follow the schedule whatever the answers do (an open loop), so a slow server shows
    up as latency instead of silently lowering the rate.
    """
    loop = asyncio.get_running_loop()
    count = max(1, int(rate * duration))
    start = loop.time()
    tasks: list[tuple[asyncio.Task[Sent], str, int]] = []
    for i in range(count):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        job = jobs[i % len(jobs)]
        tasks.append((asyncio.create_task(send_one(pool, secret, job)), job.agent_id, time.time_ns()))
    await asyncio.wait([t for t, _, _ in tasks], timeout=timeout)
    sent = []
    for task, agent_id, began in tasks:
        if task.done():
            sent.append(task.result())
        else:
            # Unanswered within the timeout: counted as an error (status 598), never dropped.
            task.cancel()
            sent.append(Sent(agent_id, 0, began, time.time_ns() - began, 598))
    return sent


def final_versions(sent: Sequence[Sent]) -> dict[str, int]:
    finals: dict[str, int] = {}
    for s in sent:
        if s.version > finals.get(s.agent_id, 0):
            finals[s.agent_id] = s.version
    return finals
