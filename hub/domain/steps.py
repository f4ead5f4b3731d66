"""Step derivation: the dashboard's five steps from an instance's status and workflow step. Pure."""

from __future__ import annotations

from typing import Final, Literal

StepState = Literal["completed", "active", "pending", "error"]

UI_STEPS: Final[tuple[tuple[str, str], ...]] = (
    ("queued", "Queued"),
    ("creating_server", "Creating Server"),
    ("installing_dependencies", "Installing Dependencies"),
    ("configuring_agent", "Configuring Agent"),
    ("running", "Running"),
)

# Workflow step identifiers in the order a workflow reports them.
WORKFLOW_STEPS: Final[tuple[str, ...]] = (
    "vm_created",
    "network_configured",
    "ansible_started",
    "ansible_complete",
)

# Which UI step is active while the instance is at a workflow step. Networking is part of the
# infrastructure setup, so vm_created and network_configured both show "Installing Dependencies".
STEP_UI_INDEX: Final[dict[str, int]] = {
    "vm_created": 2,
    "network_configured": 2,
    "ansible_started": 3,
    "ansible_complete": 4,
}

_FAILED_WITHOUT_STEP_INDEX: Final = 2


def workflow_step_order(step: str) -> int:
    """Position of a workflow step in the workflow (0-based); ValueError for an unknown step."""
    return WORKFLOW_STEPS.index(step)


def derive_steps(status: str, current_step: str | None) -> list[tuple[str, str, StepState]]:
    """(key, label, state) for each UI step.

    ``pending``: step 0 active. ``provisioning``: 0 completed and 1 active, or with a known workflow
    step at UI index i: < i completed, i active. ``failed``: < i completed and i in error (i = 2 when
    the failure came before any step). ``running``: all completed. An unknown step is treated as no
    step; ``stopped`` (and any unknown status) shows nothing started.
    """
    if status == "running":
        return _states(completed_before=len(UI_STEPS), current=None, current_state="active")
    if status == "provisioning":
        index = STEP_UI_INDEX.get(current_step or "", 1)
        return _states(completed_before=index, current=index, current_state="active")
    if status == "failed":
        index = STEP_UI_INDEX.get(current_step or "", _FAILED_WITHOUT_STEP_INDEX)
        return _states(completed_before=index, current=index, current_state="error")
    if status == "pending":
        return _states(completed_before=0, current=0, current_state="active")
    return _states(completed_before=0, current=None, current_state="active")


def _states(
    *, completed_before: int, current: int | None, current_state: StepState
) -> list[tuple[str, str, StepState]]:
    result: list[tuple[str, str, StepState]] = []
    for index, (key, label) in enumerate(UI_STEPS):
        state: StepState
        if index < completed_before:
            state = "completed"
        elif index == current:
            state = current_state
        else:
            state = "pending"
        result.append((key, label, state))
    return result
