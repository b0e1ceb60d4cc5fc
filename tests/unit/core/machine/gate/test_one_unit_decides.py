"""One unit sending a third to a half of all requests, a fifth of them failing, decides no test.

Seeded stages of ``tests.support.clustered``'s ``one_unit`` shape at the default plan's 5%
and 25% stages, judged by the real gate (its always-valid boundary at every look and its
final look at the stage's end). The unit lands in either arm with even odds; identical arms
are never rolled back, where the plain cluster-robust variance rolled most of them back
(docs/architecture.md, *Statistics*, "Unequal buckets").
"""

from __future__ import annotations

import pytest

from controller.core.rollouts import Stage
from controller.core.rollouts.plan import DEFAULT_PLAN
from tests.support.clustered import SHAPES, Judged, simulate_clustered


@pytest.mark.parametrize("stage", [1, 2])
def test_identical_arms_with_one_dominant_failing_unit_are_not_rolled_back(stage: int) -> None:
    plan = DEFAULT_PLAN.model_copy(
        update={"stages": [DEFAULT_PLAN.stages[stage], Stage(percent=100)]}
    )
    stopped = [
        simulate_clustered(Judged(plan, {}), SHAPES["one_unit"], seed=seed)["plan"].stopped
        for seed in range(4)
    ]
    assert stopped == [None] * 4
