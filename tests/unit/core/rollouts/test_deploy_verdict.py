"""A deploy gate's verdict: done only once a rollout has ended, ok only when it completed."""

from __future__ import annotations

import pytest

from controller.core.rollouts import deploy_verdict


@pytest.mark.parametrize(
    ("phase", "pause_reason", "gate", "why", "waiting", "done", "ok", "reason"),
    [
        ("completed", None, None, "all stages passed", None, True, True, "completed: all"),
        ("rolled_back", None, None, "error_rate regressed", None, True, False, "rolled back: "),
        ("killed", None, None, "monitor 77 is down", None, True, False, "killed: monitor"),
        ("aborted", None, None, "", None, True, False, "aborted"),
        ("running", None, "hold", "not enough units", None, False, False, "held by the gate: "),
        ("running", None, "advance", "ok", "ready", False, False, "running, not ended: ready"),
        ("running", None, None, None, None, False, False, "running, not ended"),
        ("paused", "inconclusive", "hold", "x", "inconclusive", False, False, "paused (incon"),
        ("paused", "operator", None, "x", None, False, False, "paused (operator): x"),
        ("paused", "monitor", None, "deploy down", None, False, False, "paused (monitor): "),
        ("paused", "awaiting_approval", None, "", "waits", False, False, "paused (awaiting"),
        ("pending", None, None, None, "scheduled: starts at", False, False, "not started: sch"),
    ],
)
def test_only_an_ending_is_done_and_only_a_completion_is_ok(
    phase: str,
    pause_reason: str | None,
    gate: str | None,
    why: str | None,
    waiting: str | None,
    done: bool,
    ok: bool,
    reason: str,
) -> None:
    verdict = deploy_verdict(
        phase=phase, pause_reason=pause_reason, gate=gate, why=why, version=7, waiting=waiting
    )
    assert (verdict.done, verdict.ok, verdict.phase, verdict.version) == (done, ok, phase, 7)
    assert verdict.reason.startswith(reason), verdict.reason


def test_a_reason_is_bounded() -> None:
    verdict = deploy_verdict(phase="killed", pause_reason=None, gate=None, why="x" * 999, version=1)
    assert len(verdict.reason) == 500
