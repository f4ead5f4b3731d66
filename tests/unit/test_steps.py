from __future__ import annotations

import pytest

from hub.domain.steps import UI_STEPS, WORKFLOW_STEPS, derive_steps, workflow_step_order

C, A, P, E = "completed", "active", "pending", "error"

CASES = [
    # (status, current_step, expected states of Queued..Running)
    ("pending", None, [A, P, P, P, P]),
    ("provisioning", None, [C, A, P, P, P]),
    ("provisioning", "vm_created", [C, C, A, P, P]),
    ("provisioning", "network_configured", [C, C, A, P, P]),
    ("provisioning", "ansible_started", [C, C, C, A, P]),
    ("provisioning", "ansible_complete", [C, C, C, C, A]),
    ("provisioning", "no_such_step", [C, A, P, P, P]),
    ("running", None, [C, C, C, C, C]),
    ("running", "ansible_complete", [C, C, C, C, C]),
    ("failed", None, [C, C, E, P, P]),
    ("failed", "vm_created", [C, C, E, P, P]),
    ("failed", "network_configured", [C, C, E, P, P]),
    ("failed", "ansible_started", [C, C, C, E, P]),
    ("failed", "ansible_complete", [C, C, C, C, E]),
    ("stopped", None, [P, P, P, P, P]),
]


@pytest.mark.parametrize(("status", "step", "expected"), CASES, ids=[f"{status}-{step}" for status, step, _ in CASES])
def test_derive_steps_follows_the_design_table(status: str, step: str | None, expected: list[str]) -> None:
    steps = derive_steps(status, step)
    assert [state for _, _, state in steps] == expected
    assert [(key, label) for key, label, _ in steps] == list(UI_STEPS)


def test_the_ui_steps_are_named_as_in_the_design() -> None:
    assert UI_STEPS == (
        ("queued", "Queued"),
        ("creating_server", "Creating Server"),
        ("installing_dependencies", "Installing Dependencies"),
        ("configuring_agent", "Configuring Agent"),
        ("running", "Running"),
    )


def test_workflow_steps_are_ordered() -> None:
    assert [workflow_step_order(step) for step in WORKFLOW_STEPS] == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        workflow_step_order("unknown")
