"""Stages already passed, tested again on evidence counted late: tables of cases."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.core.machine import late_regression, passed_stages, step
from controller.core.rollouts import GateInput, RaiseAlert, RecordDecision
from controller.core.rollouts.rollout import Phase, Rollout, VerdictKind
from controller.core.stats.aggregates import FlagAggregates
from tests.unit.core.machine.gate.test_gate import T0, arm, data, rollout

LATER = T0 + timedelta(hours=3)
HEALTHY_10 = data(arm(units=1_111), arm(units=10_000))
HARMED_10 = data(arm(units=1_111, errors=650), arm())


def at(stage: int, phase: Phase = Phase.RUNNING) -> Rollout:
    """The two-stage rollout at ``stage``, each stage having published one version."""
    return rollout().model_copy(
        update={"stage": stage, "phase": phase, "stage_versions": {0: [1], 1: [2]}}
    )


@pytest.mark.parametrize(
    ("state", "passed"),
    [
        (at(0), {}),
        (at(1), {0: [1]}),
        (at(1, Phase.COMPLETED), {0: [1], 1: [2]}),
        (at(1).model_copy(update={"stage_versions": {1: [2]}}), {}),  # none published in 0
    ],
    ids=["first stage", "second stage", "completed", "no versions"],
)
def test_passed_stages(state: Rollout, passed: dict[int, list[int]]) -> None:
    assert passed_stages(state) == passed


@pytest.mark.parametrize(
    ("reads", "regressed"),
    [
        ({}, False),
        ({0: HEALTHY_10}, False),
        ({0: HARMED_10}, True),
    ],
    ids=["nothing passed", "healthy then", "harmed since"],
)
def test_late_regression(reads: dict[int, FlagAggregates], *, regressed: bool) -> None:
    found = late_regression(at(1), reads, LATER)
    assert (found is not None) is regressed
    if found is None:
        return
    assert found.kind is VerdictKind.ROLLBACK
    assert found.reason.startswith("late evidence of stage 1/2")
    late = found.evidence.late
    assert late is not None
    assert late.stage == 0
    assert late.flag_versions == [1]
    assert "counted after it passed" in late.why
    assert found.evidence.breach == "error_rate"


def test_a_late_regression_rolls_the_flag_back_with_evidence_that_it_came_late() -> None:
    found = late_regression(at(1), {0: HARMED_10}, LATER)
    assert found is not None
    new, actions = step(at(1), GateInput(found, LATER))
    assert new is not None
    assert new.phase is Phase.ROLLED_BACK
    decisions = [a for a in actions if isinstance(a, RecordDecision)]
    assert decisions
    assert "late evidence" in decisions[0].reason


def test_a_completed_rollouts_late_regression_alerts_once_naming_the_flag_and_stage() -> None:
    completed = at(1, Phase.COMPLETED)
    found = late_regression(completed, {0: HARMED_10}, LATER)
    assert found is not None
    new, actions = step(completed, GateInput(found, LATER))
    assert new is not None
    assert new.phase is Phase.COMPLETED  # an operator judges; nothing is rolled back
    assert new.late_regression is not None
    alerts = [a for a in actions if isinstance(a, RaiseAlert)]
    assert [(a.kind, a.severity) for a in alerts] == [("late_regression", "critical")]
    assert alerts[0].summary.startswith("f completed, but late evidence of stage 1/2")
    assert alerts[0].details["stage"] == 0
    assert step(new, GateInput(found, LATER)) == (new, [])  # once
