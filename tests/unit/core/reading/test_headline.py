"""The verdict line a rollout's page and report open with, pinned by a table."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.reading.headline import verdict_line
from controller.core.reading.views import RolloutStatus
from controller.core.wire.messages import Decision

AT = {"index": 1, "number": 2, "of": 4, "percent": 20.0, "label": "stage 2/4 (20%)"}
REASON = "error rate +3.6 pp [+0.5, +6.7] (+72%), regressed (p = 0.0078)"


def status(phase: str, **over: Any) -> RolloutStatus:
    served = {
        "flag": "f", "rollout_id": "r1", "plan": "p", "phase": phase, "stage": 1, "stages": 4,
        "at_stage": AT, "percent": 20.0, "flag_version": 1, "time_in_stage_s": 0.0,
        "min_duration_s": 0.0, "min_units_per_arm": 1, "verdict": None, "verdict_reason": None,
    }  # fmt: skip
    return RolloutStatus.model_validate(served | over)


def decision(action: str, reason: str, **over: Any) -> Decision:
    base = {"v": 1, "id": "d", "ts": 0, "flag": "f", "kind": "gate", "type": "decision"}
    base |= {"rollout_id": "r1", "action": action, "outcome": "applied"}
    return Decision.model_validate(
        base | {"reason": reason, "stage": 1, "evidence": {"at_stage": AT}} | over
    )


ROLLBACK = decision("rollback", REASON)
CASES: list[tuple[str, RolloutStatus, list[Decision], str]] = [
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
    (
        "an older controller's status names its stage by number",
        status("rolled_back", at_stage=None),
        [],
        "Rolled back at stage 2/4",
    ),
    ("an unknown phase is said as it is", status("new_phase"), [], "New phase at stage 2/4 (20%)"),
    (
        "a hostile reason is one bounded line",
        status("rolled_back"),
        [decision("rollback", "a\nb" + "x" * 400)],
        "Rolled back at stage 2/4 (20%): a b" + "x" * 297,
    ),
]


@pytest.mark.parametrize(
    ("case", "state", "decisions", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_verdict_line(
    case: str, state: RolloutStatus, decisions: list[Decision], expected: str
) -> None:
    assert verdict_line(state, decisions) == expected


def test_a_decision_without_its_stage_leaves_the_stage_to_the_status() -> None:
    bare = decision("abort", "wrong plan", evidence={})
    line = verdict_line(status("aborted"), [bare])
    assert line == "Aborted at stage 2/4 (20%): wrong plan"


def wire_test(delta: float, lower: float, upper: float, **over: Any) -> dict[str, Any]:
    test = {
        "delta": delta, "variance": 1e-6, "n": 4000, "half_width": (upper - lower) / 2,
        "lower": lower, "upper": upper, "regressed": False, "direction": "lower_is_better",
        "tolerance": 0.0, "alpha": 0.05, "n_tune": 1000, "p_value": 0.2,
    }  # fmt: skip
    return test | over


def test_a_running_line_names_the_guardrails_watched_as_the_list_does() -> None:
    guardrails = {
        "error_rate": wire_test(0.07, -0.02, 0.16),
        "latency_p95": wire_test(-3.0, -9.0, 2.0, tolerance=5.0),
        "conversion_rate": "insufficient data",
    }
    running = status(
        "running",
        verdict="hold",
        verdict_reason="minimum stage time not reached",
        evidence={"guardrails": guardrails},
    )
    assert verdict_line(running) == (
        "Running at stage 2/4 (20%); the gate says hold: minimum stage time not reached;"
        " error rate watching (above tolerance, not yet significant)"
    )
