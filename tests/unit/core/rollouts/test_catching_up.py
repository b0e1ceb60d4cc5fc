"""When a stage waiting for its evidence looks at the broker, and when its wait is alerted:
tables of cases (docs/alerts.md, ``evidence_behind``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.core.rollouts import (
    Completeness,
    Phase,
    Rollout,
    VerdictKind,
    WaitClock,
    looks_at_broker,
    planned_end,
    timed,
    waited_for,
)
from tests.unit.core.machine.gate.test_gate import T0, rollout

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
