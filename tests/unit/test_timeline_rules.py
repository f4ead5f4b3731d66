"""The timeline's pure rules: step times from state changes, and the stall watch's verdicts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.domain.stall_rules import Silences, verdict
from hub.domain.steps import StepState, advance_timeline
from hub.settings import Settings, SettingsError
from persistence.callback_store import InstanceState

C, A, P, E = "completed", "active", "pending", "error"
T0 = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_step_that_becomes_active_starts_and_one_left_ends() -> None:
    start = advance_timeline({}, [P, P, P, P, P], [A, P, P, P, P], T0)
    assert start.times == {
        "queued": {"startedAt": "2026-12-02T06:00:00Z", "completedAt": None, "expectedSeconds": None}
    }
    assert (start.started, start.finished) == ("queued", ())

    moved = advance_timeline(start.times, [A, P, P, P, P], [C, A, P, P, P], at(12.5))
    assert moved.times["queued"]["completedAt"] == "2026-12-02T06:00:12.500000Z"
    assert moved.times["creating_server"]["startedAt"] == "2026-12-02T06:00:12.500000Z"
    assert (moved.started, moved.finished) == ("creating_server", (("queued", 12.5),))
    assert start.times["queued"]["completedAt"] is None  # the input is not changed


def test_skipped_steps_start_and_end_at_once_and_are_no_samples() -> None:
    before: list[StepState] = [C, A, P, P, P]
    times: dict[str, Any] = {
        "queued": {"startedAt": "2026-12-02T06:00:00Z", "completedAt": "2026-12-02T06:00:01Z", "expectedSeconds": 1.0},
        "creating_server": {"startedAt": "2026-12-02T06:00:01Z", "completedAt": None, "expectedSeconds": None},
    }
    change = advance_timeline(times, before, [C, C, C, C, A], at(61))
    stamp = "2026-12-02T06:01:01Z"
    assert change.times["installing_dependencies"] == {
        "startedAt": stamp,
        "completedAt": stamp,
        "expectedSeconds": None,
    }
    assert change.times["configuring_agent"] == {"startedAt": stamp, "completedAt": stamp, "expectedSeconds": None}
    assert change.started == "running"
    assert change.finished == (("creating_server", 60.0),)
    assert change.times["queued"] == times["queued"]


def test_a_failed_step_ends_and_the_step_completed_before_it_is_a_sample() -> None:
    times: dict[str, Any] = {"creating_server": {"startedAt": "2026-12-02T06:00:00Z", "completedAt": None}}
    change = advance_timeline(times, [C, A, P, P, P], [C, C, E, P, P], at(5))
    assert change.times["installing_dependencies"]["completedAt"] == "2026-12-02T06:00:05Z"
    assert change.finished == (("creating_server", 5.0),)
    assert change.started is None


def test_times_once_written_stay_even_when_the_steps_go_back_to_pending() -> None:
    times: dict[str, Any] = {
        key: {"startedAt": "2026-12-02T06:00:00Z", "completedAt": "2026-12-02T06:00:00Z"}
        for key in ("queued", "running")
    }
    change = advance_timeline(times, [C, C, C, C, C], [P, P, P, P, P], at(100))
    assert change.times == times and change.finished == () and change.started is None


def test_a_step_active_before_times_were_kept_gets_no_sample() -> None:
    change = advance_timeline({}, [C, A, P, P, P], [C, C, A, P, P], at(3))
    assert change.finished == ()
    assert change.times["creating_server"]["startedAt"] == change.times["creating_server"]["completedAt"]


def instance(
    status: str,
    *,
    last_word: float | None,
    heartbeat: bool = False,
    stalled: bool = False,
    changed: float = -1_000,
) -> InstanceState:
    last = None if last_word is None else at(last_word)
    return InstanceState(
        id=uuid.uuid4(),
        agent_id=uuid.uuid4(),
        job_id="job",
        status=status,
        current_step=None,
        error=None,
        instance_metadata={},
        last_heartbeat_at=last if heartbeat else None,
        version=1,
        updated_at=at(changed),
        last_callback_at=last,
        stalled_since=last if stalled else None,
    )


SILENCES = Silences(stall_after=300, heartbeat_timeout=180, fail_after=3600)
LISTENING = at(-10_000)  # the watch has been listening since long before
VERDICTS = [
    ("pending-quiet", instance("pending", last_word=0), 299, None),
    ("pending-stalls", instance("pending", last_word=0), 300, "stalled"),
    ("provisioning-stalls", instance("provisioning", last_word=0), 301, "stalled"),
    ("already-marked", instance("provisioning", last_word=0, stalled=True), 301, None),
    ("marked-then-lost", instance("provisioning", last_word=0, stalled=True), 3600, "timed_out"),
    ("lost-unmarked", instance("provisioning", last_word=0), 3600, "timed_out"),
    ("running-never-heartbeat", instance("running", last_word=0), 10_000, None),
    ("running-quiet", instance("running", last_word=0, heartbeat=True), 179, None),
    ("running-stalls", instance("running", last_word=0, heartbeat=True), 180, "stalled"),
    ("running-never-failed", instance("running", last_word=0, heartbeat=True, stalled=True), 10_000, None),
    ("failed", instance("failed", last_word=0, heartbeat=True), 10_000, None),
    ("stopped", instance("stopped", last_word=0), 10_000, None),
    ("no-word-at-all", instance("pending", last_word=None, changed=0), 10_000, "timed_out"),
    # A replica without the timeline changed it later (updated_at) and wrote no last word: that counts.
    ("older-replica-changed-it", instance("provisioning", last_word=0, changed=200), 301, None),
]


@pytest.mark.parametrize(
    ("state", "now", "expected"), [case[1:] for case in VERDICTS], ids=[case[0] for case in VERDICTS]
)
def test_the_verdicts(state: InstanceState, now: float, expected: str | None) -> None:
    assert verdict(state, SILENCES, at(now), LISTENING) == expected


def test_only_silence_the_hub_could_hear_counts() -> None:
    quiet_for_hours = instance("provisioning", last_word=0)
    # The hub (or its database) came back at 3,500 s: 100 s of silence it could hear, not 3,600.
    assert verdict(quiet_for_hours, SILENCES, at(3600), at(3500)) is None
    assert verdict(quiet_for_hours, SILENCES, at(3800), at(3500)) == "stalled"
    assert verdict(quiet_for_hours, SILENCES, at(7100), at(3500)) == "timed_out"


def test_fail_after_zero_never_fails() -> None:
    never = Silences(stall_after=300, heartbeat_timeout=180, fail_after=0)
    assert verdict(instance("provisioning", last_word=0, stalled=True), never, at(10**7), LISTENING) is None
    stall, fail, _heartbeat = never.cutoffs(at(0))
    assert fail < stall - timedelta(days=365 * 1000)


@pytest.mark.parametrize(
    ("seconds", "message"),
    [
        (3600, "No callback from the provisioning workflow for 60 minutes; it is presumed lost."),
        (60, "No callback from the provisioning workflow for 1 minute; it is presumed lost."),
        (90, "No callback from the provisioning workflow for 90 seconds; it is presumed lost."),
        (4, "No callback from the provisioning workflow for 4 seconds; it is presumed lost."),
    ],
)
def test_the_lost_message_follows_the_setting(seconds: int, message: str) -> None:
    assert Silences(stall_after=1, heartbeat_timeout=1, fail_after=seconds).lost_message == message


def test_the_watch_looks_at_a_tenth_of_the_shortest_silence_at_least_every_second() -> None:
    assert SILENCES.interval == 18.0
    assert Silences(stall_after=2, heartbeat_timeout=2, fail_after=4).interval == 1.0
    assert Silences.of(Settings.build(stall_after=600, heartbeat_timeout=900)).interval == 60.0


def test_the_silences_are_settings_with_sane_defaults() -> None:
    settings = Settings.from_env({"HUB_STALL_AFTER": "2", "HUB_HEARTBEAT_TIMEOUT": "3", "HUB_FAIL_AFTER": "0"})
    assert (settings.stall_after, settings.heartbeat_timeout, settings.fail_after) == (2, 3, 0)
    default = Settings.build()
    assert (default.stall_after, default.heartbeat_timeout, default.fail_after) == (300, 180, 3600)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"HUB_STALL_AFTER": "0"}, "HUB_STALL_AFTER"),
        ({"HUB_HEARTBEAT_TIMEOUT": "soon"}, "HUB_HEARTBEAT_TIMEOUT"),
        ({"HUB_FAIL_AFTER": "-1"}, "HUB_FAIL_AFTER"),
        ({"HUB_STALL_AFTER": "600", "HUB_FAIL_AFTER": "600"}, "HUB_FAIL_AFTER"),
    ],
)
def test_bad_silences_name_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(environ)
