"""The verdict line a rollout's page and report open with, pinned by a table."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.headline import verdict_line

AT = {"index": 1, "number": 2, "of": 4, "percent": 20.0, "label": "stage 2/4 (20%)"}
REASON = "error rate +3.6 pp [+0.5, +6.7] (+72%), regressed (p = 0.0078)"


def status(phase: str, **over: Any) -> dict[str, Any]:
    return {"rollout_id": "r1", "phase": phase, "stage": 1, "stages": 4, "at_stage": AT} | over


def decision(action: str, reason: str, **over: Any) -> dict[str, Any]:
    base = {"type": "decision", "rollout_id": "r1", "action": action, "outcome": "applied"}
    return base | {"reason": reason, "stage": 1, "evidence": {"at_stage": AT}} | over


ROLLBACK = decision("rollback", REASON)
CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]], str]] = [
    ("rolled back", status("rolled_back"), [ROLLBACK], f"Rolled back at stage 2/4 (20%): {REASON}"),
    (
        "another rollout's rollback is not this one's",
        status("rolled_back"),
        [decision("rollback", "old", rollout_id="r0")],
        "Rolled back at stage 2/4 (20%)",
    ),
    (
        "a rejected rollback is no reason",
        status("rolled_back"),
        [ROLLBACK, decision("rollback", "no", outcome="rejected")],
        f"Rolled back at stage 2/4 (20%): {REASON}",
    ),
    (
        "killed",
        status("killed"),
        [decision("kill", "monitor api down")],
        "Killed at stage 2/4 (20%): monitor api down",
    ),
    (
        "aborted",
        status("aborted"),
        [decision("abort", "wrong plan")],
        "Aborted at stage 2/4 (20%): wrong plan",
    ),
    ("completed", status("completed"), [], "Completed: every stage passed"),
    (
        "completed, watching",
        status("completed", watch_until="2026-11-22T12:00:00+00:00"),
        [],
        "Completed: every stage passed, in its watch",
    ),
    (
        "paused",
        status("paused", pause_reason="srm"),
        [decision("pause", "sample ratio mismatch")],
        "Paused at stage 2/4 (20%) (srm): sample ratio mismatch",
    ),
    (
        "running",
        status("running", verdict="hold", verdict_reason="minimum stage time not reached"),
        [],
        "Running at stage 2/4 (20%); the gate says hold: minimum stage time not reached",
    ),
    ("no stage known", {"phase": "rolled_back"}, [], "Rolled back"),
    ("odd phase", {"phase": 7}, [], "7"),
    (
        "a hostile reason is one bounded line",
        status("rolled_back"),
        [decision("rollback", "a\nb" + "x" * 1000)],
        "Rolled back at stage 2/4 (20%): a b" + "x" * 297,
    ),
]


@pytest.mark.parametrize(
    ("case", "state", "decisions", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_verdict_line(
    case: str, state: dict[str, Any], decisions: list[dict[str, Any]], expected: str
) -> None:
    assert verdict_line(state, decisions) == expected


def test_a_decision_without_its_stage_leaves_the_stage_to_the_status() -> None:
    bare = {"type": "decision", "rollout_id": "r1", "action": "abort", "outcome": "applied"}
    line = verdict_line(status("aborted"), [bare | {"reason": "wrong plan", "stage": 1}])
    assert line == "Aborted at stage 2/4 (20%): wrong plan"
