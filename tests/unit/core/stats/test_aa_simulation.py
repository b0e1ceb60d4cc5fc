"""Identical arms through the real gate, seeded: false rollbacks per rollout stay below alpha.

The default plan's small first stage (1% for 30 minutes, then 100%) at 200
requests per second, latency with rare long stalls, gated at the
daemon's cadence (``tests/support/simulation.py``). The full plan, every metric and
regressions, with as many runs as wanted, is ``bench/aa.py``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from controller.core.rollouts.plan import DEFAULT_PLAN
from controller.core.rollouts.plan_parts import Stage
from controller.core.stats.aggregates import ArmAggregate
from tests.support.simulation import METRICS, Arm, Service, simulate, single_plans

RUNS = 30
EARLY = DEFAULT_PLAN.model_copy(
    update={"stages": [DEFAULT_PLAN.stages[0], Stage(percent=100, min_units_per_arm=0)]}
)


def test_identical_arms_are_not_rolled_back_in_the_small_stage() -> None:
    singles = single_plans(EARLY)
    stops: Counter[str] = Counter()
    for run in range(RUNS):
        outcomes = simulate(EARLY, singles, seed=2_400 + run, growth=0.01)
        stops.update(name for name, o in outcomes.items() if o.stopped is not None)
    print(f"\nA/A, {RUNS} runs of a 1% stage: false rollbacks {dict(stops)}")
    # alpha is 0.05 per rollout: at most 1 of 30 for the plan and for each metric
    assert all(stops[name] <= 1 for name in ("plan", *METRICS)), stops


def test_a_doubled_p95_and_tripled_errors_are_caught_on_their_own_guardrail() -> None:
    singles = single_plans(EARLY)
    for metric, treatment in (
        ("latency_p99", Service().regressed("latency_p95")),
        ("error_rate", Service().regressed("error_rate", factor=3.0)),
    ):
        missed = []
        for run in range(10):
            judged = {"latency_p95": singles["latency_p95"]} if metric != "error_rate" else {}
            outcome = simulate(EARLY, judged, seed=7_000 + run, treatment=treatment, growth=0.01)
            if outcome["plan"].stopped is None:
                missed.append(run)
                continue
            assert outcome["plan"].stopped == metric, (metric, run, outcome)
            assert outcome["plan"].stage == 0
            if judged:
                assert outcome["latency_p95"].stopped == "latency_p95"
        # A p99 tested on units estimates its design effect too, which costs a little power:
        # one of the ten 1% stages of 30 minutes may end before its doubled p99 is seen
        # (the full plan's next stages catch it: bench/aa.py).
        assert len(missed) <= (1 if metric == "latency_p99" else 0), (metric, missed)


def test_an_arm_s_aggregate_is_what_its_store_fields_read_back() -> None:
    """The simulation's arms sum their increments as the flush does; the gate is given what
    :meth:`ArmAggregate.from_fields` reads of those sums, unit buckets included."""
    rng = np.random.default_rng(11)
    arm = Arm(Service().regressed("latency_p95"))
    assert arm.aggregate() == ArmAggregate.from_fields(arm.fields(), units=0)
    for expected in (0.0, 1.0, 40.0, 2_000.0, 30_000.0):
        arm.serve(rng, expected)
        assert arm.aggregate() == ArmAggregate.from_fields(arm.fields(), units=arm.units)
    assert arm.aggregate().buckets is not None
