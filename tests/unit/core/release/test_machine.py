"""The pipeline state machine: each completion starts the next behind its gate; a stop is final.

Each case runs a pipeline from its start through a list of events and checks
where every environment stands, the run's phase, the rollouts started, and
the decisions of the last event. Every event is also replayed at once: a
replay changes nothing and decides nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.core.release.approvals import Approval
from controller.core.release.events import (
    Approve,
    Decision,
    Event,
    KeyRevoked,
    LateRegression,
    RolloutEnded,
    StartRollout,
    TimePassed,
)
from controller.core.release.gate import next_gate
from controller.core.release.machine import begin, step
from controller.core.release.pipeline import Pipeline
from controller.core.release.state import PipelineState, RunPhase, rollout_id_of
from controller.core.rollouts.actions import RaiseAlert
from tests.unit.core.release.pipelines import pipeline, steps

RUN = "run-1"
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ended(environment: str, outcome: Any, minutes: float, reason: str = "") -> RolloutEnded:
    rollout = rollout_id_of(RUN, environment)
    return RolloutEnded(environment, rollout, outcome, at(minutes), reason)


def approve(key: str, command: str, minutes: float, **fields: str) -> Approve:
    data = {"step": "production", "role": "approver", **fields}
    approval = Approval(
        key_id=key, operator=f"op-{key}", command_id=command, at=at(minutes), **data
    )
    return Approve(approval, at(minutes))


def tick(minutes: float) -> TimePassed:
    return TimePassed(at(minutes))


@dataclass
class Run:
    state: PipelineState
    started: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    last: list[Any] = field(default_factory=list)


def run(release: Pipeline, events: list[Event]) -> Run:
    """Begin, then each event, each replayed at once (which must change nothing)."""
    state, actions = begin(
        release, run_id=RUN, flag="checkout", now=T0, actor="ana", command_id="c0"
    )
    done = Run(state)
    for event in [None, *events]:
        if event is not None:
            new, actions = step(done.state, event)
            assert step(new, event) == (new, [])  # the replay
            done.state = new
        done.started += [a.environment for a in actions if isinstance(a, StartRollout)]
        done.keys += [a.key for a in actions if isinstance(a, Decision)]
        done.last = actions
    return done


def said(actions: list[Any]) -> list[tuple[str, str]]:
    """The decisions' keys (without the run) and outcomes, and the alerts' kinds."""
    out: list[tuple[str, str]] = []
    for action in actions:
        if isinstance(action, Decision):
            out.append((action.key.removeprefix(f"{RUN}/"), action.outcome))
        elif isinstance(action, RaiseAlert):
            out.append((action.kind, "alert"))
    return out


PLAIN = pipeline(steps=steps({}, {"soak": None}, {"approval": None}))
RELEASE = pipeline()
ALLOW_TUESDAY = {"kind": "allow", "from": "2026-11-24T09:00:00", "to": "2026-11-24T17:00:00"}
WINDOWED = pipeline(steps=steps({}, {"soak": None}, {"approval": None, "windows": [ALLOW_TUESDAY]}))
STAGING_DONE: list[Event] = [
    ended("dev", "completed", 10),
    tick(70),
    ended("staging", "completed", 200),
]

Case = tuple[Pipeline, list[Event], tuple[str, ...], RunPhase, list[str], list[tuple[str, str]]]
CASES: dict[str, Case] = {
    # case: (pipeline, events, each step's status, phase, rollouts started, the last decisions)
    "the start starts dev": (
        RELEASE, [], ("running", "pending", "pending"), RunPhase.RUNNING, ["dev"],
        [("dev/start", "applied")],
    ),
    "dev completes: staging waits for its soak": (
        RELEASE, [ended("dev", "completed", 10)],
        ("completed", "pending", "pending"), RunPhase.RUNNING, ["dev"],
        [("dev/completed", "applied"), ("staging/waiting", "waiting")],
    ),
    "a tick before the soak ends starts nothing": (
        RELEASE, [ended("dev", "completed", 10), tick(69)],
        ("completed", "pending", "pending"), RunPhase.RUNNING, ["dev"], [],
    ),
    "the soak elapses: staging starts": (
        RELEASE, [ended("dev", "completed", 10), tick(70)],
        ("completed", "running", "pending"), RunPhase.RUNNING, ["dev", "staging"],
        [("staging/start", "applied")],
    ),
    "no gate: each completion starts the next at once": (
        PLAIN, [ended("dev", "completed", 10)],
        ("completed", "running", "pending"), RunPhase.RUNNING, ["dev", "staging"],
        [("dev/completed", "applied"), ("staging/start", "applied")],
    ),
    "staging completes: production waits for two approvals": (
        RELEASE, STAGING_DONE,
        ("completed", "completed", "pending"), RunPhase.RUNNING, ["dev", "staging"],
        [("staging/completed", "applied"), ("production/waiting", "waiting")],
    ),
    "one approval does not move production": (
        RELEASE, [*STAGING_DONE, approve("k1", "a1", 210)],
        ("completed", "completed", "pending"), RunPhase.RUNNING, ["dev", "staging"],
        [("approval/a1", "applied")],
    ),
    "a second from the same key does not": (
        RELEASE, [*STAGING_DONE, approve("k1", "a1", 210), approve("k1", "a2", 211)],
        ("completed", "completed", "pending"), RunPhase.RUNNING, ["dev", "staging"],
        [("approval/a2", "rejected")],
    ),
    "a second key's does: production starts": (
        RELEASE,
        [*STAGING_DONE, approve("k1", "a1", 210), approve("k1", "a2", 211),
         approve("k2", "a3", 212)],
        ("completed", "completed", "running"), RunPhase.RUNNING, ["dev", "staging", "production"],
        [("approval/a3", "applied"), ("production/start", "applied")],
    ),
    "approvals given early count when staging completes": (
        RELEASE,
        [ended("dev", "completed", 10), tick(70), approve("k1", "a1", 80), approve("k2", "a2", 90),
         ended("staging", "completed", 200)],
        ("completed", "completed", "running"), RunPhase.RUNNING, ["dev", "staging", "production"],
        [("staging/completed", "applied"), ("production/start", "applied")],
    ),
    "approvals expired by the time staging completes count nothing": (
        RELEASE,
        [ended("dev", "completed", 10), tick(70), approve("k1", "a1", 80), approve("k2", "a2", 90),
         ended("staging", "completed", 85 + 24 * 60)],
        ("completed", "completed", "pending"), RunPhase.RUNNING, ["dev", "staging"],
        [("staging/completed", "applied"), ("production/waiting", "waiting")],
    ),
    "a revoked key's approval counts no more": (
        RELEASE,
        [ended("dev", "completed", 10), tick(70), approve("k1", "a1", 80), approve("k2", "a2", 90),
         KeyRevoked("k1", at(100)), ended("staging", "completed", 200)],
        ("completed", "completed", "pending"), RunPhase.RUNNING, ["dev", "staging"],
        [("staging/completed", "applied"), ("production/waiting", "waiting")],
    ),
    "production completes: the pipeline completes": (
        PLAIN,
        [ended("dev", "completed", 10), ended("staging", "completed", 20),
         ended("production", "completed", 30)],
        ("completed", "completed", "completed"), RunPhase.COMPLETED,
        ["dev", "staging", "production"], [("completed", "applied")],
    ),
    "staging rolls back: the pipeline stops, production never starts": (
        RELEASE,
        [ended("dev", "completed", 10), tick(70), approve("k1", "a1", 80), approve("k2", "a2", 90),
         ended("staging", "rolled_back", 100, "error_rate regressed")],
        ("completed", "rolled_back", "pending"), RunPhase.STOPPED, ["dev", "staging"],
        [("staging/rolled_back", "applied"), ("pipeline_stopped", "alert")],
    ),
    "after a stop, time and approvals start nothing": (
        RELEASE,
        [ended("dev", "completed", 10), tick(70), ended("staging", "rolled_back", 100),
         approve("k1", "a1", 110), approve("k2", "a2", 120), tick(10_000)],
        ("completed", "rolled_back", "pending"), RunPhase.STOPPED, ["dev", "staging"], [],
    ),
    "dev is killed: the pipeline stops at dev": (
        RELEASE, [ended("dev", "killed", 5, "killed by bob")],
        ("killed", "pending", "pending"), RunPhase.STOPPED, ["dev"],
        [("dev/killed", "applied"), ("pipeline_stopped", "alert")],
    ),
    "dev is killed while staging soaks: staging never starts": (
        RELEASE, [ended("dev", "completed", 10), ended("dev", "killed", 30), tick(70)],
        ("killed", "pending", "pending"), RunPhase.STOPPED, ["dev"], [],
    ),
    "staging is aborted": (
        PLAIN, [ended("dev", "completed", 10), ended("staging", "aborted", 20)],
        ("completed", "aborted", "pending"), RunPhase.STOPPED, ["dev", "staging"],
        [("staging/aborted", "applied"), ("pipeline_stopped", "alert")],
    ),
    "staging killed after production started: production runs on, the run stops": (
        PLAIN,
        [ended("dev", "completed", 10), ended("staging", "completed", 20),
         ended("staging", "killed", 30)],
        ("completed", "killed", "running"), RunPhase.STOPPED, ["dev", "staging", "production"],
        [("staging/killed", "applied"), ("pipeline_stopped", "alert")],
    ),
    "production completes after the run stopped: nothing follows": (
        PLAIN,
        [ended("dev", "completed", 10), ended("staging", "completed", 20),
         ended("staging", "killed", 30), ended("production", "completed", 40)],
        ("completed", "killed", "completed"), RunPhase.STOPPED, ["dev", "staging", "production"],
        [("production/completed", "applied")],
    ),
    "a kill after the pipeline completed is recorded, and stops nothing": (
        PLAIN,
        [ended("dev", "completed", 10), ended("staging", "completed", 20),
         ended("production", "completed", 30), ended("dev", "killed", 40)],
        ("killed", "completed", "completed"), RunPhase.COMPLETED,
        ["dev", "staging", "production"], [("dev/killed", "applied")],
    ),
    "another rollout of the flag is not this run's": (
        PLAIN, [RolloutEnded("dev", "someone-elses", "completed", at(10))],
        ("running", "pending", "pending"), RunPhase.RUNNING, ["dev"], [],
    ),
    "an environment the pipeline lacks is not its business": (
        PLAIN, [RolloutEnded("qa", rollout_id_of(RUN, "qa"), "killed", at(10))],
        ("running", "pending", "pending"), RunPhase.RUNNING, ["dev"], [],
    ),
    "a completion of a step not started is ignored": (
        PLAIN, [ended("production", "completed", 10)],
        ("running", "pending", "pending"), RunPhase.RUNNING, ["dev"], [],
    ),
    "outside the release window production waits": (
        WINDOWED, [ended("dev", "completed", 10), ended("staging", "completed", 20)],
        ("completed", "completed", "pending"), RunPhase.RUNNING, ["dev", "staging"],
        [("staging/completed", "applied"), ("production/waiting", "waiting")],
    ),
    "the window opens: production starts": (
        WINDOWED,
        [ended("dev", "completed", 10), ended("staging", "completed", 20), tick(23 * 60 + 59),
         tick(24 * 60)],
        ("completed", "completed", "running"), RunPhase.RUNNING, ["dev", "staging", "production"],
        [("production/start", "applied")],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_transitions(case: str) -> None:
    release, events, statuses, phase, started, last = CASES[case]
    done = run(release, events)
    assert tuple(s.status.value for s in done.state.steps) == statuses
    assert done.state.phase is phase
    assert done.started == started
    assert said(done.last) == last
    assert len(done.keys) == len(set(done.keys))  # nothing is decided twice


def test_a_start_carries_the_plan_with_its_overrides_and_a_rollout_id_of_the_run() -> None:
    state, actions = begin(
        RELEASE, run_id=RUN, flag="checkout", now=T0, actor="ana", command_id="c0"
    )
    start = actions[0]
    assert isinstance(start, StartRollout)
    assert [s.percent for s in start.plan.stages] == [100]  # dev's override
    assert start.rollout_id == rollout_id_of(RUN, "dev") == state.steps[0].rollout_id
    assert start.key == f"{RUN}/dev/start"
    assert rollout_id_of(RUN, "dev") != rollout_id_of("run-2", "dev")


def test_a_restart_between_completed_and_started_starts_production_once() -> None:
    """The completion and the start it leads to are one transition: a restart that lost
    it replays the completion onto the state stored before, and decides the same."""
    before = run(PLAIN, [ended("dev", "completed", 10)]).state
    completed = ended("staging", "completed", 20)
    first, second = step(before, completed), step(before, completed)
    assert first == second
    starts = [a for a in first[1] if isinstance(a, StartRollout)]
    assert [(s.environment, s.key) for s in starts] == [("production", f"{RUN}/production/start")]
    assert step(first[0], completed) == (first[0], [])


def test_a_stop_says_where_it_stopped_and_what_will_not_start() -> None:
    done = run(
        RELEASE,
        [
            ended("dev", "completed", 10),
            tick(70),
            ended("staging", "rolled_back", 100, "p99 regressed"),
        ],
    )
    decision = done.last[0]
    assert isinstance(decision, Decision)
    assert decision.reason == (
        "staging rolled back (p99 regressed): the pipeline stops here; production will not start"
    )
    assert decision.evidence.not_started == ["production"]
    assert done.state.stopped_at == "staging"


def test_the_waiting_decision_says_what_production_waits_for() -> None:
    done = run(RELEASE, STAGING_DONE)
    waiting = done.last[1]
    assert isinstance(waiting, Decision)
    assert waiting.reason == "production waits for: approvals: 2 more from approver"
    assert waiting.evidence.approvals_needed == {"approver": 2}


def test_the_start_of_production_carries_its_approvals_as_evidence() -> None:
    done = run(RELEASE, [*STAGING_DONE, approve("k1", "a1", 210), approve("k2", "a2", 212)])
    start = done.last[2]
    assert isinstance(start, Decision)
    assert [a.key_id for a in start.evidence.approvals or []] == ["k1", "k2"]
    assert start.evidence.after == "staging"


APPROVAL_REFUSALS: dict[str, tuple[Pipeline, list[Event], Approve, str]] = {
    # case: (pipeline, events before, the approval, its refusal)
    "a finished step": (
        PLAIN, [ended("dev", "completed", 10)], approve("k1", "a1", 20, step="dev"),
        "dev has already started (completed): nothing to approve",
    ),
    "a running step": (
        PLAIN, [], approve("k1", "a1", 20, step="dev"),
        "dev has already started (running): nothing to approve",
    ),
    "a stopped pipeline": (
        RELEASE, [ended("dev", "killed", 10)], approve("k1", "a1", 20),
        "the pipeline stopped at dev: no step awaits an approval",
    ),
    "a completed pipeline": (
        PLAIN,
        [ended("dev", "completed", 10), ended("staging", "completed", 20),
         ended("production", "completed", 30)],
        approve("k1", "a1", 40),
        "the pipeline completed: no step awaits an approval",
    ),
    "a step that needs none": (
        RELEASE, [], approve("k1", "a1", 20, step="staging"), "staging needs no approval",
    ),
    "a step the pipeline lacks": (
        RELEASE, [], approve("k1", "a1", 20, step="qa"),
        "step: the pipeline has no step 'qa' (dev, staging, production)",
    ),
    "the wrong role": (
        RELEASE, [], approve("k1", "a1", 20, role="dev"),
        "production needs approvals from approver, not dev",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(APPROVAL_REFUSALS))
def test_refused_approvals(case: str) -> None:
    release, events, approval, refusal = APPROVAL_REFUSALS[case]
    before = run(release, events).state
    after, actions = step(before, approval)
    assert [(a.outcome, a.reason) for a in actions if isinstance(a, Decision)] == [
        ("rejected", refusal)
    ]
    assert after.approvals.approvals == before.approvals.approvals
    assert after.steps == before.steps
    assert step(after, approval) == (after, [])  # a replay decides nothing


def test_a_revocation_is_a_decision_naming_the_key_and_the_steps() -> None:
    done = run(RELEASE, [approve("k1", "a1", 20), KeyRevoked("k1", at(30))])
    decision = done.last[0]
    assert isinstance(decision, Decision)
    assert (decision.kind, decision.outcome) == ("revoke", "applied")
    assert decision.reason == "key k1 revoked: its approvals of production count no more"
    assert done.state.approvals.approvals == ()


def test_the_state_is_stored_and_read_back_whole() -> None:
    done = run(RELEASE, [*STAGING_DONE, approve("k1", "a1", 210)])
    assert PipelineState.model_validate_json(done.state.model_dump_json()) == done.state


def late(environment: str, minutes: float) -> LateRegression:
    rollout = rollout_id_of(RUN, environment)
    return LateRegression(environment, rollout, "late evidence of stage 1/2 (5%): …", at(minutes))


@pytest.mark.parametrize(
    ("events", "held", "started"),
    [
        ([ended("dev", "completed", 10), late("dev", 20), tick(120)], True, ["dev"]),
        ([late("staging", 5)], False, ["dev"]),  # not completed: not this run's business yet
        ([ended("dev", "completed", 10), tick(70), late("dev", 80)], True, ["dev", "staging"]),
    ],
    ids=["holds the next step", "a step not started", "holds the step after the next"],
)
def test_a_completed_steps_late_regression_holds_the_next_step(
    events: list[Event], *, held: bool, started: list[str]
) -> None:
    done = run(RELEASE, events)
    assert done.started == started
    assert (done.state.held is not None) is held
    if held:
        assert "dev/late_regression" in [k.removeprefix(f"{RUN}/") for k in done.keys]
        found = next_gate(done.state, at(120))
        assert found is not None
        assert not found[1].open
        assert any(w.startswith("an operator: dev completed, then") for w in found[1].waiting_for)
