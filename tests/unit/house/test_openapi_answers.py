"""The answer models of the OpenAPI document hold what the routes build, case by case.

The live daemon meets few pipeline runs or app keys under schemathesis, so the views the
routes serve are built here from the same cases their own tests use, and each must be read
by its model (extra fields forbidden): a pipeline run's is the core's own
(:class:`controller.core.reading.PipelineRun`), the others are in
``controller/contracts/openapi/answers.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from controller.contracts.openapi.answers import AppKeyList
from controller.core.reading import PipelineRun, pipeline_view
from controller.core.rollouts import Phase
from controller.core.trust import AppKey, Scope, digest
from tests.unit.core.reading.test_pipeline_view import (
    CASES,
    KEYS,
    approve,
    at,
    ended,
    rollout_of,
    run_through,
)


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_pipeline_view_is_a_pipeline_run(case: str) -> None:
    events, changes, minutes, _steps, _waits = CASES[case]
    view = pipeline_view(run_through(events, **changes), {}, at(minutes), KEYS)
    PipelineRun.model_validate(view.model_dump(mode="json"))


def test_a_run_with_approvals_and_a_rollout_is_a_pipeline_run() -> None:
    events: list[Any] = [ended("dev", 10), ended("staging", 200), approve("k1", 205)]
    state = run_through(events)
    ours = rollout_of(state, "production", 1, Phase.RUNNING)
    view = pipeline_view(state, {"production": ours}, at(215), KEYS)
    shown = PipelineRun.model_validate(view.model_dump(mode="json"))
    production = shown.environments[2]
    assert production.approvals is not None
    assert [a.operator for a in production.approvals.given] == ["op-k1"]


@pytest.mark.parametrize("revoked", [False, True])
@pytest.mark.parametrize("environment", [None, "staging"])
def test_the_key_list_shows_what_app_keys_show(revoked: bool, environment: str | None) -> None:
    key = AppKey(
        id=digest("web")[:16],
        name="web",
        scopes=frozenset({Scope.EVENTS, Scope.EVALUATE}),
        client=True,
        environment=environment,
        secret_sha256=digest("s3cret"),
        created_ms=1,
        created_by="ana",
        revoked_ms=2 if revoked else None,
        revoked_by="ana" if revoked else None,
    )
    listed = AppKeyList.model_validate({"keys": [key.shown()]})
    assert listed.keys[0].scopes == [Scope.EVALUATE, Scope.EVENTS]
