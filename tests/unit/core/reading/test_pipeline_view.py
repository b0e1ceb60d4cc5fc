"""What a pipeline's status shows: each environment's step and rollout, the gate before the
next step (completion, soak left, approvals N of M by role, a window), and who approved when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.core.reading import PipelineApprovals, PipelineRollout, flag_problem, pipeline_view
from controller.core.release import Approval, Approve, RolloutEnded, TimePassed, begin, step
from controller.core.release.state import PipelineState, rollout_id_of
from controller.core.rollouts import Phase, Plan, Rollout
from tests.unit.core.release.pipelines import pipeline, steps

RUN = "run-1"
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
KEYS = {"dev": "checkout@dev", "staging": "checkout@staging", "production": "checkout"}
ALLOW = {"kind": "allow", "from": "2026-11-24T09:00:00", "to": "2026-11-24T17:00:00"}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ended(environment: str, minutes: float) -> RolloutEnded:
    return RolloutEnded(environment, rollout_id_of(RUN, environment), "completed", at(minutes))


def approve(key: str, minutes: float) -> Approve:
    approval = Approval(
        step="production",
        key_id=key,
        operator=f"op-{key}",
        role="approver",
        command_id=f"c-{key}",
        at=at(minutes),
    )
    return Approve(approval, at(minutes))


def run_through(events: list[Any], **changes: Any) -> PipelineState:
    state, _ = begin(
        pipeline(**changes), run_id=RUN, flag="checkout", now=T0, actor="ana", command_id="c0"
    )
    for event in events:
        state, _ = step(state, event)
    return state


def rollout_of(state: PipelineState, environment: str, stage: int, phase: Phase) -> Rollout:
    plan: Plan = state.pipeline.plan_for(environment)
    return Rollout(
        flag=KEYS[environment],
        rollout_id=rollout_id_of(RUN, environment),
        plan=plan,
        phase=phase,
        stage=stage,
        stage_started_at=T0,
        salt="s",
        flag_version=1,
        started_at=T0,
        updated_at=T0,
    )


STAGING_DONE = [ended("dev", 10), TimePassed(at(70)), ended("staging", 200)]
# case: (events, pipeline changes, minutes now, each step's (status, gate), next's waits)
CASES: dict[str, tuple[list[Any], dict[str, Any], float, list[tuple[str, Any]], Any]] = {
    "dev running: staging waits for it to complete": (
        [],
        {},
        5,
        [("running", None), ("pending", "soak 1:00:00"), ("pending", "approvals: 2 from approver")],
        ["dev to complete (it is running)"],
    ),
    "dev completed: staging waits for its soak, with the time left": (
        [ended("dev", 10)],
        {},
        40,
        [
            ("completed", None),
            ("pending", "soak 1:00:00"),
            ("pending", "approvals: 2 from approver"),
        ],
        ["soak until 2026-11-23T10:10:00+00:00 (0:30:00 left)"],
    ),
    "staging completed: production waits for two approvals": (
        STAGING_DONE,
        {},
        205,
        [
            ("completed", None),
            ("completed", "soak 1:00:00"),
            ("pending", "approvals: 2 from approver"),
        ],
        ["approvals: 2 more from approver"],
    ),
    "one approval: one more": (
        [*STAGING_DONE, approve("k1", 210)],
        {},
        215,
        [
            ("completed", None),
            ("completed", "soak 1:00:00"),
            ("pending", "approvals: 2 from approver"),
        ],
        ["approvals: 1 more from approver"],
    ),
    "a window shut: production waits for it": (
        [ended("dev", 10), ended("staging", 20)],
        {"steps": steps({}, {"soak": None}, {"approval": None, "windows": [ALLOW]})},
        30,
        [("completed", None), ("completed", "nothing more"), ("pending", "a release window")],
        "a release window",
    ),
    "every step completed: nothing next": (
        [ended("dev", 10), ended("staging", 20), ended("production", 30)],
        {"steps": steps({}, {"soak": None}, {"approval": None})},
        40,
        [("completed", None), ("completed", "nothing more"), ("completed", "nothing more")],
        None,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_each_environment_and_what_gates_the_next(case: str) -> None:
    events, changes, minutes, expected, waits = CASES[case]
    view = pipeline_view(run_through(events, **changes), {}, at(minutes), KEYS)
    assert [(e.status, e.gate) for e in view.environments] == expected
    assert [e.key for e in view.environments] == list(KEYS.values())
    if waits is None:
        assert view.next is None
        return
    assert view.next is not None
    if isinstance(waits, str):
        assert view.next.open is False
        assert any(w.startswith(waits) for w in view.next.waiting_for)
    else:
        assert view.next.waiting_for == waits


def test_approvals_say_n_of_m_per_role_who_and_when() -> None:
    state = run_through([*STAGING_DONE, approve("k1", 210)])
    approvals = pipeline_view(state, {}, at(215)).environments[2].approvals
    assert approvals == PipelineApprovals.model_validate(
        {
            "needed": {"approver": 2},
            "missing": {"approver": 1},
            "approved": {"approver": ["op-k1 (k1)"]},
            "given": [
                {
                    "operator": "op-k1",
                    "key_id": "k1",
                    "role": "approver",
                    "at": "2026-11-23T12:30:00+00:00",
                }
            ],
            "expires_after": "1 day, 0:00:00",
            "summary": "1 more from approver",
        }
    )
    # An approval that expired counts no more
    later = pipeline_view(state, {}, at(210 + 24 * 60)).environments[2].approvals
    assert later is not None
    assert (later.given, later.missing) == ([], {"approver": 2})


def test_an_environments_rollout_shows_its_stage_only_when_it_is_the_runs() -> None:
    state = run_through([ended("dev", 10), TimePassed(at(70))])
    ours = rollout_of(state, "staging", 0, Phase.RUNNING)
    other = ours.model_copy(update={"rollout_id": "someone-elses"})
    view = pipeline_view(state, {"staging": ours}, at(80), KEYS)
    assert view.environments[1].rollout == PipelineRollout(
        phase="running", stage=0, stages=2, label="stage 1/2 (5%)", percent=5.0
    )
    assert pipeline_view(state, {"staging": other}, at(80)).environments[1].rollout is None


@pytest.mark.parametrize(
    ("flag", "problem"),
    [("checkout", False), ("a.b:c-d_1", False), ("checkout@staging", True), ("", True),
     ("x" * 129, True), ("<script>", True), ("-dash", True)],
)  # fmt: skip
def test_a_pipeline_is_named_by_a_flags_own_key(flag: str, problem: bool) -> None:
    assert (flag_problem(flag) is not None) is problem
