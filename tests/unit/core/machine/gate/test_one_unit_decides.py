"""One unit sending a third to a half of all requests, a fifth of them failing, decides no test.

Seeded stages of ``tests.support.clustered``'s ``one_unit`` shape at the default plan's 5%
and 25% stages, judged by the real gate (its always-valid boundary at every look and its
final look at the stage's end). The unit lands in either arm with even odds; identical arms
are never rolled back, where the plain cluster-robust variance rolled most of them back
(docs/architecture.md, *Statistics*, "Unequal buckets"). The default cap takes the unit down
to a heavy user's weight and the error rate's evidence lists it; with caps off, the unit
sends most of its arm's requests and the guardrails on requests hold, naming it ("Caps"),
as the guardrails per exposure do whatever the cap: its exposures are never capped.
"""

from __future__ import annotations

import numpy as np
import pytest

from controller.core.machine.gate import evaluate
from controller.core.rollouts import Guardrail, HeavyUnits, Plan, Stage, Verdict, VerdictKind
from controller.core.rollouts.plan import DEFAULT_PLAN
from controller.core.stats import FlagAggregates
from tests.support.clustered import (
    SHAPES,
    Judged,
    _Arm,
    _population,
    simulate_clustered,
    unit_id,
)
from tests.support.simulation import T0, _rollout


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


def _stage_end(plan: Plan, seed: int) -> tuple[Verdict, str]:
    """The gate's verdict on the default plan's 5% stage of ``one_unit`` traffic, all of its
    requests in, and the id the store would list the deciding unit by."""
    stage = DEFAULT_PLAN.stages[1]
    r = _population(np.random.default_rng(seed), SHAPES["one_unit"], 20_000, stage.percent, 1.0)
    units = r.buckets.size
    arms = (_Arm(units, np.zeros(units, bool)), _Arm(units, np.zeros(units, bool)))
    everything = np.arange(r.arm.size)
    for a, arm in enumerate(arms):
        arm.add(r, everything[r.arm == a])
    data = FlagAggregates("sim", frozenset({2}), arms[0].aggregate(), arms[1].aggregate())
    started = T0
    now = started + stage.min_duration
    verdict = evaluate(_rollout(plan, 1, started), data, now)
    return verdict, unit_id(0, int(r.buckets[0]))


@pytest.mark.parametrize("seed", [0, 1])
def test_the_default_cap_takes_the_unit_down_and_the_evidence_names_it(seed: int) -> None:
    verdict, unit = _stage_end(DEFAULT_PLAN, seed)
    assert verdict.kind is not VerdictKind.ROLLBACK
    test = verdict.evidence.guardrails["error_rate"]  # type: ignore[index]
    assert not isinstance(test, str)
    assert test.unit_cap is not None
    assert unit in [c.unit for c in test.capped or []]


@pytest.mark.parametrize("seed", [1, 6])  # seeds whose unit lands in the 5% treatment
def test_without_caps_the_unit_holds_the_guardrails_on_requests_naming_it(seed: int) -> None:
    plan = DEFAULT_PLAN.model_copy(update={"heavy_units": HeavyUnits(cap="off")})
    verdict, unit = _stage_end(plan, seed)
    assert verdict.kind is VerdictKind.HOLD
    assert f"error_rate not yet tested: unit {unit} sends" in verdict.reason
    assert f"latency_p99 not yet tested: unit {unit} sends" in verdict.reason
    assert f"new_failures not yet tested: unit {unit} sends" in verdict.reason
    assert verdict.evidence.guardrails == {  # no test taken, no look recorded
        "error_rate": "insufficient data",
        "latency_p99": "insufficient data",
        "new_failures": "insufficient data",
    }


@pytest.mark.parametrize("seed", [1, 6])
def test_the_unit_holds_the_guardrails_per_exposure_its_requests_capped_or_not(seed: int) -> None:
    guardrails = [
        *DEFAULT_PLAN.guardrails,
        Guardrail(metric="conversion_rate", tolerance=0.0),
        Guardrail(metric="conversion_value", tolerance=0.0),
    ]
    plan = DEFAULT_PLAN.model_copy(update={"guardrails": guardrails})
    verdict, unit = _stage_end(plan, seed)
    assert verdict.kind is VerdictKind.HOLD
    for key in ("conversion_rate", "conversion_value"):
        assert f"{key} not yet tested: one bucket of units holds" in verdict.reason
        assert verdict.evidence.guardrails[key] == "insufficient data"  # type: ignore[index]
    assert f"of treatment's exposures: unit {unit}, sending" in verdict.reason
    assert "error_rate not yet tested" not in verdict.reason  # its requests are capped
