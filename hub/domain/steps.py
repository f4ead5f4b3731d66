"""Step derivation: the dashboard's five steps from an instance's status and workflow step. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from persistence.models import rfc3339

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


# A step's times as the instance stores them: {"startedAt": RFC 3339 or None, "completedAt": RFC 3339
# or None, "expectedSeconds": float or None}, under the step's key.
StepTimes = dict[str, dict[str, str | float | None]]


@dataclass(frozen=True, slots=True)
class TimelineChange:
    """What a change of the step states did to the timeline, for what the caller stores beside it."""

    times: StepTimes
    # The step that became active now (its expected duration is looked up and stored with it).
    started: str | None
    # (step key, seconds) for each step that was active and is now completed: the owner's samples.
    finished: tuple[tuple[str, float], ...]


def advance_timeline(
    times: Mapping[str, Mapping[str, str | float | None]],
    before: Sequence[StepState],
    after: Sequence[StepState],
    at: datetime,
) -> TimelineChange:
    """The step times after the UI steps went from ``before`` to ``after`` states at ``at``.

    A step that became active, completed or failed without a start gets ``at`` as its start; a step
    that became completed or failed gets ``at`` as its end. So a skipped step (pending straight to
    completed) starts and ends at once. Times once set never change, and a step that goes back to
    pending (a stopped agent) keeps them: they are history.
    """
    result: StepTimes = {key: dict(entry) for key, entry in times.items()}
    stamp = rfc3339(at)
    started: str | None = None
    finished: list[tuple[str, float]] = []
    for (key, _label), was, now in zip(UI_STEPS, before, after, strict=True):
        if now == "pending" or now == was:
            continue
        entry = result.setdefault(key, {"startedAt": None, "completedAt": None, "expectedSeconds": None})
        began = entry.get("startedAt")
        if began is None:
            entry["startedAt"] = stamp
        if now == "active":
            started = key
            continue
        if entry.get("completedAt") is None:
            entry["completedAt"] = stamp
            # A sample only from a step seen running from its start: not skipped, not failed.
            if was == "active" and now == "completed" and isinstance(began, str):
                finished.append((key, max(0.0, (at - datetime.fromisoformat(began)).total_seconds())))
    return TimelineChange(result, started, tuple(finished))


def step_states(steps: Sequence[tuple[str, str, StepState]]) -> list[StepState]:
    return [state for _key, _label, state in steps]
