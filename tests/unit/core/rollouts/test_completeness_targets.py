"""Evidence complete up to the broker's log ends pinned for a stage, as tables: which
partitions are behind their targets, what the gate makes of them, when a waiting stage looks
at the broker and when its wait is alerted (docs/alerts.md, ``evidence_behind``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from controller.core.machine import step
from controller.core.machine.gate import evaluate
from controller.core.rollouts import (
    Phase,
    Rollout,
    WaitClock,
    looks_at_broker,
    planned_end,
    timed,
    waited_for,
)
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


# --- when a waiting stage looks at the broker, and when its wait is alerted ------------------

MIN = timedelta(minutes=30)
"""Stage 0's minimum duration in the gate tests' plan: its planned end is T0 + MIN."""
LAGGING = Completeness(lagging={"events": frozenset({2})})
HELD = Completeness(held={"events": frozenset({1})})
UNREAD = Completeness(unread="no complete answer within 3 s")


def _in(phase: Phase = Phase.RUNNING, *, watch_until: timedelta | None = None) -> Rollout:
    update: dict[str, object] = {"phase": phase}
    if watch_until is not None:
        update["watch_until"] = T0 + watch_until
    return rollout().model_copy(update=update)


@pytest.mark.parametrize(
    ("case", "state", "end"),
    [
        ("running: its minimum after it began", _in(), T0 + MIN),
        ("in the watch: the watch's end", _in(watch_until=4 * MIN), T0 + 4 * MIN),
        ("paused: it waits for a person", _in(Phase.PAUSED), None),
        ("pending", _in(Phase.PENDING), None),
        ("completed", _in(Phase.COMPLETED), None),
    ],
)
def test_the_planned_end_of_a_stage(case: str, state: Rollout, end: object) -> None:
    assert planned_end(state) == end, case


@pytest.mark.parametrize(
    ("case", "state", "verdict", "seen", "at", "looks"),
    [
        ("about to move", _in(), VerdictKind.ADVANCE, Completeness(), MIN, True),
        ("about to move early", _in(), VerdictKind.ADVANCE, Completeness(), MIN / 2, True),
        ("lagging past its planned end", _in(), VerdictKind.HOLD, LAGGING, MIN, True),
        ("lagging long past it", _in(), VerdictKind.HOLD, LAGGING, 10 * MIN, True),
        ("held past its planned end", _in(), VerdictKind.HOLD, HELD, MIN + MIN, True),
        ("broker unread past it", _in(), VerdictKind.HOLD, UNREAD, MIN + MIN, True),
        ("lagging before its planned end", _in(), VerdictKind.HOLD, LAGGING, MIN / 2, False),
        ("complete, holding for units", _in(), VerdictKind.HOLD, Completeness(), 2 * MIN, False),
        ("a rollback never waits", _in(), VerdictKind.ROLLBACK, LAGGING, 2 * MIN, False),
        ("a pause never waits", _in(), VerdictKind.PAUSE, LAGGING, 2 * MIN, False),
        ("paused, lagging", _in(Phase.PAUSED), VerdictKind.HOLD, LAGGING, 2 * MIN, False),
        (
            "in the watch, lagging before its end",
            _in(watch_until=4 * MIN),
            VerdictKind.HOLD,
            LAGGING,
            2 * MIN,
            False,
        ),
        (
            "in the watch, lagging past its end",
            _in(watch_until=4 * MIN),
            VerdictKind.HOLD,
            LAGGING,
            4 * MIN,
            True,
        ),
    ],
)
def test_when_a_stage_looks_at_the_broker(
    case: str,
    state: Rollout,
    verdict: VerdictKind,
    seen: Completeness,
    at: timedelta,
    looks: bool,
) -> None:
    assert looks_at_broker(state, verdict, seen, T0 + at) is looks, case


S = timedelta(seconds=1)
AFTER = 60 * S


@pytest.mark.parametrize(
    ("case", "clock", "waiting", "at", "after", "then", "alert"),
    [
        ("a wait begins", WaitClock(), True, 0 * S, AFTER, WaitClock(T0), False),
        ("goes on", WaitClock(T0), True, 59 * S, AFTER, WaitClock(T0), False),
        ("lasts the bound", WaitClock(T0), True, 60 * S, AFTER, WaitClock(T0, True), True),
        ("lasts longer", WaitClock(T0), True, 187 * S, AFTER, WaitClock(T0, True), True),
        ("alerted once", WaitClock(T0, True), True, 300 * S, AFTER, WaitClock(T0, True), False),
        ("ends", WaitClock(T0), False, 30 * S, AFTER, WaitClock(), False),
        ("ends, alerted", WaitClock(T0, True), False, 90 * S, AFTER, WaitClock(None, True), False),
        ("nothing waited", WaitClock(), False, 90 * S, AFTER, WaitClock(), False),
        ("never alerts", WaitClock(T0), True, 900 * S, None, WaitClock(T0), False),
        (
            "a later wait, timed afresh",
            WaitClock(),
            True,
            90 * S,
            AFTER,
            WaitClock(T0 + 90 * S),
            False,
        ),
    ],
)
def test_when_a_wait_is_alerted(
    case: str,
    clock: WaitClock,
    waiting: bool,
    at: timedelta,
    after: timedelta | None,
    then: WaitClock,
    alert: bool,
) -> None:
    assert timed(clock, waiting=waiting, now=T0 + at, after=after) == (then, alert), case


OWNERS = {"events": {0: "a:1", 1: "b:2", 2: "c:3"}}


@pytest.mark.parametrize(
    ("case", "stored", "missing", "named"),
    [
        ("all counted, nothing missing", {0: 10, 1: 20, 2: 30}, {}, []),
        ("one behind", {0: 10, 1: 15, 2: 30}, {}, [(1, 5, 15, "b:2")]),
        ("nothing stored yet", {0: 10, 1: None, 2: 30}, {}, [(1, 20, None, "b:2")]),
        ("lagging on a quiet log", {0: 10, 1: 20, 2: 30}, {2}, [(2, 0, 30, "c:3")]),
        (
            "lagging and behind, with another behind",
            {0: 4, 1: 20, 2: 18},
            {2},
            [(0, 6, 4, "a:1"), (2, 12, 18, "c:3")],
        ),
        ("held, behind", {0: 10, 1: 12, 2: 30}, {1}, [(1, 8, 12, "b:2")]),
        ("stored past its target", {0: 10, 1: 25, 2: 30}, {}, []),
    ],
)
def test_what_a_waiting_stage_names(
    case: str,
    stored: dict[int, int | None],
    missing: set[int],
    named: list[tuple[int, int, int | None, str]],
) -> None:
    targets = {"events": {0: 10, 1: 20, 2: 30}}
    lost = {"events": frozenset(missing)} if missing else {}
    found = waited_for(targets, {"events": stored}, lost, OWNERS)
    assert [(b.partition, b.records, b.stored, b.owner) for b in found] == named, case
    assert all(b.topic == "events" and b.target == targets["events"][b.partition] for b in found)


def test_an_owner_not_known_is_named_so() -> None:
    (lag,) = waited_for({"events": {0: 9}}, {"events": {0: 3}}, {}, {})
    assert (lag.records, lag.owner) == (6, None)
