"""The workflow kit: which callbacks a run sends, and how the sender signs and retries them."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from hub.cli.commands import main
from hub.cli.simulate import Sender, callback_body, workflow
from hub.domain.signatures import standard_webhook, verify_standard

SECRET = "unit-test-webhook-secret"


@pytest.mark.parametrize(
    ("fail_at", "names", "failed_step"),
    [
        (
            None,
            ["provisioning", "vm_created", "network_configured", "ansible_started", "ansible_complete", "running"],
            None,
        ),
        ("provisioning", ["failed"], None),
        ("ansible_started", ["provisioning", "vm_created", "network_configured", "failed"], "ansible_started"),
        (
            "running",
            ["provisioning", "vm_created", "network_configured", "ansible_started", "ansible_complete", "failed"],
            None,
        ),
    ],
    ids=["whole", "fail-at-start", "fail-at-ansible", "fail-at-running"],
)
def test_a_workflow_sends_the_steps_before_its_failure(
    fail_at: str | None, names: list[str], failed_step: str | None
) -> None:
    run = workflow("job-1", fail_at=fail_at)
    assert [name for name, _ in run] == names
    assert all(body["job_id"] == "job-1" for _, body in run)
    if fail_at is None:
        assert run[-1][1]["status"] == "running" and run[-1][1]["metadata"]["ip_address"]
    else:
        assert run[-1][1]["status"] == "failed" and run[-1][1]["error"].endswith(".")
        assert run[-1][1].get("step") == failed_step


def test_metadata_is_the_same_for_every_callback_of_a_job() -> None:
    server_id = callback_body("job-1", "vm_created")["metadata"]["server_id"]
    assert callback_body("job-1", "running")["metadata"]["server_id"] == server_id
    assert callback_body("job-2", "running")["metadata"]["server_id"] != server_id


def test_an_unknown_callback_is_refused_with_the_valid_names() -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        callback_body("job-1", "vm_destroyed")


def recording_transport(answers: list[int | Exception]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport at the edge: answers each request with the next status (or raises the next error)."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[len(seen) - 1]
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json={"received": answer < 400})

    return httpx.MockTransport(handle), seen


async def test_server_and_connection_errors_are_retried_under_one_delivery_id() -> None:
    transport, seen = recording_transport([503, httpx.ConnectError("refused"), 200])
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        response = await Sender(client, SECRET, backoff=0.0, log=lambda _: None).send(
            {"job_id": "j", "status": "queued"}
        )
    assert response.status_code == 200
    assert len(seen) == 3
    assert len({request.headers["webhook-id"] for request in seen}) == 1
    webhook = standard_webhook(SECRET)
    for request in seen:
        # Standard Webhooks, each attempt signed with its own timestamp under the secret's UTF-8 bytes.
        headers = request.headers
        verify_standard(
            webhook, request.content, headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"]
        )
        assert "X-Hub-Signature-256" not in headers
        assert json.loads(request.content) == {"job_id": "j", "status": "queued"}


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_a_refusal_is_not_retried(status: int) -> None:
    transport, seen = recording_transport([status, 200])
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        response = await Sender(client, SECRET, backoff=0.0).send({"job_id": "j", "status": "queued"})
    assert response.status_code == status and len(seen) == 1


async def test_the_last_answer_is_returned_when_retries_run_out() -> None:
    transport, seen = recording_transport([502, 502, 502])
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        response = await Sender(client, SECRET, attempts=3, backoff=0.0, log=lambda _: None).send({"job_id": "j"})
    assert response.status_code == 502 and len(seen) == 3


@pytest.mark.parametrize(
    ("stop_after", "names"),
    [
        ("provisioning", ["provisioning"]),
        ("vm_created", ["provisioning", "vm_created"]),
        (
            "ansible_complete",
            ["provisioning", "vm_created", "network_configured", "ansible_started", "ansible_complete"],
        ),
    ],
    ids=["at-start", "after-vm", "before-running"],
)
def test_a_stopped_workflow_sends_up_to_its_stop_and_never_runs(stop_after: str, names: list[str]) -> None:
    run = workflow("job-1", stop_after=stop_after)
    assert [name for name, _ in run] == names
    assert all(body.get("status") == "provisioning" and "type" not in body for _, body in run)


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"stop_after": "running"}, "stop_after must be one of provisioning, vm_created"),
        ({"stop_after": "vm_destroyed"}, "stop_after must be one of"),
        ({"stop_after": "vm_created", "fail_at": "ansible_started"}, "either fails (fail_at) or stops"),
    ],
    ids=["running-is-no-stop", "unknown-step", "with-fail-at"],
)
def test_a_stop_that_cannot_happen_is_refused(arguments: dict[str, str], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        workflow("job-1", **arguments)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--stop-after", "running"], "argument --stop-after: invalid choice: 'running'"),
        (["--stop-after", "vm_created", "--fail-at", "ansible_started"], "not allowed with argument --stop-after"),
        (["--stop-after", "vm_created", "--error", "boom"], "--error goes with --fail-at or --step failed"),
    ],
    ids=["running", "with-fail-at", "with-error"],
)
def test_the_command_names_the_option_it_refuses(
    extra: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Refused before anything is read from the environment or sent.
    argv = ["simulate", "--url", "http://127.0.0.1:9", "--job", "job-1", *extra]
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code  # argparse's own refusals
    assert code == 2
    assert says in capsys.readouterr().err
