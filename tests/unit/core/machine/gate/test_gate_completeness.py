"""The gate on incomplete evidence, as a table: partitions held or lagging hold an advance
or a completion, never a rollback; partitions counted late are named in the evidence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from controller.core.machine.gate import evaluate
from controller.core.rollouts.completeness import Completeness, counted_late
from controller.core.rollouts.rollout import VerdictKind
from controller.core.stats.aggregates import FlagAggregates
from tests.unit.core.machine.gate.test_gate import T0, arm, data, rollout

LATER = T0 + timedelta(hours=1)  # past the minimum stage time
HEALTHY = data(arm(units=1_111), arm(units=10_000))
HARMED = data(arm(units=1_111, errors=650), arm())
HELD = Completeness(held={"events": frozenset({1, 2, 3})})
LAGGING = Completeness(lagging={"events": frozenset({2})}, horizon=LATER - timedelta(seconds=30))
BOTH = Completeness(
    held={"events": frozenset({1})},
    lagging={"otlp_spans": frozenset({0})},
    horizon=LATER - timedelta(seconds=30),
)
LATE = Completeness(late={"events": frozenset({1, 2, 3})})


@dataclass(frozen=True)
class Case:
    name: str
    data: FlagAggregates
    completeness: Completeness | None
    percent_stage: int  # 0: the 10% stage; 1: the last (100%) stage, whose advance completes
    kind: VerdictKind
    reason: str  # a fragment of the verdict's reason


CASES = [
    Case("complete evidence advances", HEALTHY, Completeness(), 0, VerdictKind.ADVANCE, "complete"),
    Case("no input is complete", HEALTHY, None, 0, VerdictKind.ADVANCE, "complete"),
    Case("held partitions hold an advance", HEALTHY, HELD, 0, VerdictKind.HOLD, "[1, 2, 3]"),
    Case("held partitions hold a completion", HEALTHY, HELD, 1, VerdictKind.HOLD, "held"),
    Case("a lagging partition holds, up to a time people read", HEALTHY, LAGGING, 0,
         VerdictKind.HOLD, "not yet counted up to 2026-11-22 12:59:30 UTC"),
    Case("held and lagging both named", HEALTHY, BOTH, 0, VerdictKind.HOLD, "otlp_spans"),
    Case("a regression never waits on held", HARMED, HELD, 0, VerdictKind.ROLLBACK, "error"),
    Case("nor on lagging", HARMED, LAGGING, 0, VerdictKind.ROLLBACK, "error"),
    Case("late partitions counted: advance", HEALTHY, LATE, 0, VerdictKind.ADVANCE, "complete"),
    Case("late partitions counted: rollback", HARMED, LATE, 0, VerdictKind.ROLLBACK, "error"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_incomplete_evidence(case: Case) -> None:
    r = rollout().model_copy(update={"stage": case.percent_stage})
    verdict = evaluate(r, case.data, LATER, None, case.completeness)
    assert verdict.kind is case.kind, verdict.reason
    assert case.reason in verdict.reason, verdict.reason


@pytest.mark.parametrize(
    ("completeness", "held", "lagging"),
    [
        (HELD, {"events": [1, 2, 3]}, None),
        (LAGGING, None, {"events": [2]}),
        (BOTH, {"events": [1]}, {"otlp_spans": [0]}),
    ],
)
def test_the_evidence_names_what_the_stage_waits_for(
    completeness: Completeness, held: object, lagging: object
) -> None:
    evidence = evaluate(rollout(), HEALTHY, LATER, None, completeness).evidence
    assert evidence.incomplete is not None
    assert evidence.incomplete.held == held
    assert evidence.incomplete.lagging == lagging
    assert (evidence.incomplete.horizon is None) == (lagging is None)
    assert evidence.incomplete.waiting.startswith("evidence incomplete: ")
    assert "incomplete" in evidence.wire()


def test_a_rollback_on_held_evidence_says_what_it_waited_for() -> None:
    evidence = evaluate(rollout(), HARMED, LATER, None, HELD).evidence
    assert evidence.breach == "error_rate"
    assert evidence.incomplete is not None
    assert evidence.incomplete.held == {"events": [1, 2, 3]}


def test_a_rollback_on_late_evidence_says_it_came_late() -> None:
    evidence = evaluate(rollout(), HARMED, LATER, None, LATE).evidence
    assert evidence.late is not None
    assert evidence.late.partitions == {"events": [1, 2, 3]}
    assert "counted late" in evidence.late.why
    assert "incomplete" not in evidence.wire()


def test_complete_evidence_adds_no_part() -> None:
    wire = evaluate(rollout(), HEALTHY, LATER, None, Completeness()).evidence.wire()
    assert "incomplete" not in wire
    assert "late" not in wire


@pytest.mark.parametrize(
    ("missed", "now", "late"),
    [
        ({}, HELD, {}),
        ({"events": frozenset({1, 2, 3})}, HELD, {}),
        ({"events": frozenset({1, 2, 3})}, Completeness(), {"events": frozenset({1, 2, 3})}),
        (
            {"events": frozenset({1, 2, 3})},
            Completeness(held={"events": frozenset({2})}),
            {"events": frozenset({1, 3})},
        ),
        ({"events": frozenset({2})}, BOTH, {"events": frozenset({2})}),
        ({"otlp_spans": frozenset({0})}, BOTH, {"otlp_spans": frozenset({0})}),  # catching up
    ],
)
def test_counted_late(
    missed: dict[str, frozenset[int]], now: Completeness, late: dict[str, frozenset[int]]
) -> None:
    assert counted_late(missed, now) == late
