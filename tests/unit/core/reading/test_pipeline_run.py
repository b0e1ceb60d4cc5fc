"""A pipeline run's view is one typed model: what the daemon serves is what every reader
reads back, field for field, in every phase of a run."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controller.core.reading import PipelineRun, pipeline_view
from controller.core.release import RolloutEnded, RunPhase, TimePassed
from controller.core.release.state import PipelineState, rollout_id_of
from controller.core.rollouts import Phase, Rollout
from tests.unit.core.reading.test_pipeline_view import (
    KEYS,
    RUN,
    STAGING_DONE,
    approve,
    at,
    ended,
    rollout_of,
    run_through,
)
from tests.unit.core.release.pipelines import steps

NO_GATES: dict[str, Any] = {"steps": steps({}, {"soak": None}, {"approval": None})}


def rolled_back(environment: str, minutes: float) -> RolloutEnded:
    rollout_id = rollout_id_of(RUN, environment)
    return RolloutEnded(environment, rollout_id, "rolled_back", at(minutes), reason="errors +28 pp")


def staging_at(state: PipelineState, phase: Phase) -> dict[str, Rollout | None]:
    return {"staging": rollout_of(state, "staging", 0, phase)}


# case: (events, pipeline changes, minutes now, the run's phase, rollouts shown, applied)
CASES: dict[str, tuple[list[Any], dict[str, Any], float, RunPhase, Phase | None, str | None]] = {
    "running: dev runs, nothing else started": ([], {}, 5, RunPhase.RUNNING, None, None),
    "running: staging's rollout at its first stage": (
        [ended("dev", 10), TimePassed(at(70))], {}, 80, RunPhase.RUNNING, Phase.RUNNING, None),
    "running: production waits for one more approval": (
        [*STAGING_DONE, approve("k1", 210)], {}, 215, RunPhase.RUNNING, None, None),
    "completed: every environment, started by rolloutctl apply": (
        [ended("dev", 10), ended("staging", 20), ended("production", 30)], NO_GATES, 40,
        RunPhase.COMPLETED, None, "ab" * 32),
    "stopped: staging rolled back": (
        [ended("dev", 10), TimePassed(at(70)), rolled_back("staging", 90)], {}, 95,
        RunPhase.STOPPED, Phase.ROLLED_BACK, None),
}  # fmt: skip


def state_of(case: str) -> PipelineState:
    events, changes, _minutes, _phase, _shown, applied = CASES[case]
    return run_through(events, **changes).model_copy(update={"applied": applied})


def view_of(case: str) -> PipelineRun:
    _events, _changes, minutes, _phase, shown, _applied = CASES[case]
    state = state_of(case)
    rollouts = {} if shown is None else staging_at(state, shown)
    return pipeline_view(state, rollouts, at(minutes), KEYS)


@pytest.mark.parametrize("case", CASES)
def test_a_run_reads_back_from_its_json_as_it_was(case: str) -> None:
    view = view_of(case)
    assert view.phase is CASES[case][3]
    assert PipelineRun.model_validate(view.model_dump(mode="json")) == view
    assert PipelineRun.model_validate_json(view.model_dump_json()) == view


@pytest.mark.parametrize("case", CASES)
def test_the_json_is_written_as_served_since_before_the_model(case: str) -> None:
    served = view_of(case).model_dump(mode="json")
    keys = list(served)
    assert keys[keys.index("updated_at") + 1] == "applied"
    assert served["applied"] == CASES[case][5]
    planned = state_of(case).pipeline.steps
    for step, plan in zip(served["environments"], planned, strict=True):
        # a step that needs no approval has no approvals key, not a null one
        assert ("approvals" in step) is (plan.approval is not None)
    gated = not case.startswith("completed")  # the completed run's pipeline has no approval
    assert any("approvals" in step for step in served["environments"]) is gated


def test_the_view_is_closed_and_frozen() -> None:
    served = view_of("running: dev runs, nothing else started").model_dump(mode="json")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        PipelineRun.model_validate({**served, "stage": 2})
    with pytest.raises(ValidationError, match="frozen"):
        view_of("running: dev runs, nothing else started").flag = "search"  # type: ignore[misc]
