"""Evidence complete up to the broker's log ends pinned for a stage, as tables: which
partitions are behind their targets, and what the gate makes of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from controller.core.machine import step
from controller.core.machine.gate import evaluate
from controller.core.rollouts.actions import RaiseAlert, RecordDecision
from controller.core.rollouts.completeness import Completeness, behind_targets
from controller.core.rollouts.policy import HealthAction
from controller.core.rollouts.rollout import TickInput, VerdictKind
from controller.core.wire import EvidenceWait, PartitionLag
from tests.unit.core.machine.gate.test_gate import T0, arm, data, rollout
from tests.unit.core.machine.test_health_actions import running
from tests.unit.core.machine.test_machine import T0 as STUCK_T0

Offsets = dict[str, dict[int, int]]


@dataclass(frozen=True)
class Target:
    name: str
    targets: Offsets
    stored: dict[str, dict[int, int | None]]
    behind: dict[tuple[str, int], int]  # (topic, partition) -> records behind
    held: dict[str, frozenset[int]] = field(default_factory=dict)


TARGETS = [
    Target("every partition at its target", {"e": {0: 5, 1: 7}}, {"e": {0: 5, 1: 7}}, {}),
    Target("one behind by its records", {"e": {0: 5, 1: 7}}, {"e": {0: 5, 1: 4}}, {("e", 1): 3}),
    Target("past the target (a log made again)", {"e": {0: 5}}, {"e": {0: 9}}, {}),
    Target("never flushed, with records", {"e": {0: 4}}, {"e": {0: None}}, {("e", 0): 4}),
    Target("never flushed, empty log", {"e": {0: 0}}, {"e": {0: None}}, {}),
    Target("a partition the store never had", {"e": {2: 6}}, {}, {("e", 2): 6}),
    Target(
        "a held partition is named held, not behind",
        {"e": {0: 5, 1: 9}},
        {"e": {0: 1, 1: 2}},
        {("e", 0): 4},
        held={"e": frozenset({1})},
    ),
    Target(
        "each topic on its own",
        {"e": {0: 3}, "spans": {0: 10}},
        {"e": {0: 3}, "spans": {0: 8}},
        {("spans", 0): 2},
    ),
]


@pytest.mark.parametrize("case", TARGETS, ids=[c.name for c in TARGETS])
def test_behind_targets(case: Target) -> None:
    behind = behind_targets(case.targets, case.stored, held=case.held)
    assert {(b.topic, b.partition): b.records for b in behind} == case.behind


def test_behind_names_the_owner_and_the_offsets() -> None:
    (b,) = behind_targets({"e": {1: 50}}, {"e": {1: 20}}, owners={"e": {1: "host-a:7"}})
    assert (b.target, b.stored, b.records, b.owner) == (50, 20, 30, "host-a:7")


LATER = T0 + timedelta(hours=1)  # past the minimum stage time
HEALTHY = data(arm(units=1_111), arm(units=10_000))
HARMED = data(arm(units=1_111, errors=650), arm())
LAG = PartitionLag(topic="events", partition=3, records=120, target=620, stored=500, owner="b:9")
BEHIND = Completeness(behind=(LAG,))
UNREAD = Completeness(unread="the broker's log end offsets: no complete answer within 3 s")
HELD_AND_BEHIND = Completeness(held={"events": frozenset({1})}, behind=(LAG,))


@dataclass(frozen=True)
class Gate:
    name: str
    data: object
    completeness: Completeness
    stage: int  # 1: the last stage, whose advance completes
    kind: VerdictKind
    reason: str


GATES = [
    Gate(
        "behind its target: an advance waits", HEALTHY, BEHIND, 0, VerdictKind.HOLD, "120 records"
    ),
    Gate("and a completion", HEALTHY, BEHIND, 1, VerdictKind.HOLD, "partition 3 of events"),
    Gate("the owner is named", HEALTHY, BEHIND, 0, VerdictKind.HOLD, "owner b:9"),
    Gate("a broker that cannot say holds", HEALTHY, UNREAD, 0, VerdictKind.HOLD, "could not be"),
    Gate("held and behind both said", HEALTHY, HELD_AND_BEHIND, 0, VerdictKind.HOLD, "held"),
    Gate("a regression never waits", HARMED, BEHIND, 0, VerdictKind.ROLLBACK, "error"),
    Gate("nor on a broker that cannot say", HARMED, UNREAD, 0, VerdictKind.ROLLBACK, "error"),
]


@pytest.mark.parametrize("case", GATES, ids=[c.name for c in GATES])
def test_the_gate_on_targets(case: Gate) -> None:
    r = rollout().model_copy(update={"stage": case.stage})
    verdict = evaluate(r, case.data, LATER, None, case.completeness)  # type: ignore[arg-type]
    assert verdict.kind is case.kind, verdict.reason
    assert case.reason in verdict.reason, verdict.reason


def test_the_wait_is_evidence_with_the_lag_and_the_partitions_are_missing() -> None:
    wait = BEHIND.evidence()
    assert wait is not None
    assert wait.behind == [LAG]
    assert BEHIND.missing == {"events": frozenset({3})}
    assert not BEHIND.complete
    unread = UNREAD.evidence()
    assert unread is not None
    assert unread.unread is not None
    assert Completeness().complete


@pytest.mark.parametrize("action", ["warn", "hold", "rollback"])
def test_a_stuck_stage_says_which_partitions_it_waits_for(action: HealthAction) -> None:
    before = running("inconclusive", action)
    waiting = BEHIND.evidence()
    _, actions = step(before, TickInput(STUCK_T0 + timedelta(minutes=31), waiting=waiting))
    alerts = [a for a in actions if isinstance(a, RaiseAlert)]
    assert alerts
    named = [a for a in alerts if "120 records behind (owner b:9)" in a.summary]
    if action == "warn":
        (stuck,) = named
        assert stuck.kind == "stuck"
        assert EvidenceWait.model_validate(stuck.details["incomplete"]).behind == [LAG]
    decisions = [a for a in actions if isinstance(a, RecordDecision)]
    for decision in decisions:  # a hold or a rollback records what it waited for
        assert decision.evidence.incomplete == waiting
