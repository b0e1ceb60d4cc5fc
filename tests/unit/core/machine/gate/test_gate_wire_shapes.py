"""A gate's evidence is published as it always was, key for key, from each kind of gate.

``gate_shapes.json`` holds the evidence each case below published when the
gate still built an open object: the typed evidence must write the same JSON
(the same keys, in the same order, the same values and number types), so a
consumer of ``rollout.decisions`` sees no change.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from controller.core.machine.gate import evaluate
from controller.core.rollouts import HealthPolicy
from controller.core.rollouts.plan import parse_plan
from controller.core.rollouts.plan_parts import Guardrail
from controller.core.rollouts.rollout import Rollout, Verdict
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from tests.unit.core.machine.gate import test_gate as table
from tests.unit.core.machine.gate import test_gate_named as named
from tests.unit.core.machine.gate import test_sourced_gate as sourced

SHAPES = Path(__file__).with_name("gate_shapes.json")
TRIAL = Guardrail(metric="error_rate", dry_run=True)


def _healthy() -> Verdict:
    return evaluate(table.rollout(), table.HEALTHY, table.LATE)


def _regression() -> Verdict:
    bad = table.data(table.arm(units=1_111, errors=650), table.arm())
    return evaluate(table.rollout(), bad, table.EARLY)


def _srm() -> Verdict:
    skewed = table.data(table.arm(units=3_000), table.arm(units=10_000))
    return evaluate(table.rollout(), skewed, table.LATE)


def _insufficient() -> Verdict:
    few = table.data(table.arm(units=1_111, requests=10), table.arm(requests=10))
    return evaluate(table.rollout(), few, table.LATE)


def _dry_run() -> Verdict:
    bad = table.data(table.arm(units=1_111, errors=650), table.arm())
    return evaluate(table.rollout(table.plan(guardrails=[TRIAL])), bad, table.LATE)


def _early() -> Verdict:
    return evaluate(table.rollout(table.EARLY_PLAN), table.HEALTHY, table.EARLY)


def _no_traffic() -> Verdict:
    return evaluate(table.rollout(), table.EMPTY, table.LATE)


def _both_arms() -> Verdict:
    base = table.HEALTHY
    crossed = FlagAggregates(
        base.flag, base.versions, base.treatment, base.control, watched=400, both_arms=100
    )
    policy = HealthPolicy(units_in_both_arms="hold")
    return evaluate(table.rollout(table.plan(health_policy=policy)), crossed, table.LATE)


def _as_before(rollout: Rollout) -> Rollout:
    """``rollout`` with no final look, whose evidence adds parts of its own (its own cases
    are in test_final_look.py): every part below is published as it always was."""
    return rollout.model_copy(
        update={"plan": rollout.plan.model_copy(update={"final_look_share": 0})}
    )


def _named() -> Verdict:
    plan = named.named_plan(Guardrail(metric="conversion_rate"), named.CHECKOUT)
    data = named.data(named.treated(0.025, other=7), named.control(0.05))
    return evaluate(_as_before(table.rollout(plan)), data, table.LATE)


def _limits_ring() -> Verdict:
    plan = parse_plan(
        {
            "stages": [
                {"audience": 'user_id in segment("staff")', "percent": 100},
                {"percent": 100},
            ],
            "guardrails": [{"metric": "error_rate"}],
            "limits": {"error_rate": 0.05, "latency_p95_ms": 200},
        }
    )
    treated = table.arm(units=2_000, requests=20_000, errors=3_000)
    data = table.data(treated, ArmAggregate())
    rollout = table.rollout(plan).model_copy(update={"percent": 100.0})
    return evaluate(_as_before(rollout), data, table.LATE + timedelta(days=1))


def _prometheus() -> Verdict:
    r = _as_before(sourced.rollout(sourced.plan()))
    return sourced.verdict(r, sourced.reading(r, errors=(600, 200)), sourced.events(5_000))


def _prometheus_missing() -> Verdict:
    r = _as_before(sourced.rollout(sourced.plan(events_guardrail=False)))
    return sourced.verdict(r, None)


CASES: dict[str, Callable[[], Verdict]] = {
    "healthy": _healthy,
    "regression": _regression,
    "srm": _srm,
    "insufficient": _insufficient,
    "dry_run": _dry_run,
    "early": _early,
    "no_traffic": _no_traffic,
    "both_arms": _both_arms,
    "named": _named,
    "limits_ring": _limits_ring,
    "prometheus": _prometheus,
    "prometheus_missing": _prometheus_missing,
}


def published(verdict: Verdict) -> bytes:
    """The evidence's JSON as a decision publishes it."""
    return orjson.dumps(verdict.evidence.wire())


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_kind_of_gate_publishes_its_evidence_as_before(name: str) -> None:
    stored = orjson.loads(SHAPES.read_bytes())[name]
    got = orjson.loads(published(CASES[name]()))
    assert list(got) == list(stored)  # the same keys, in the same order
    assert got == stored
    assert orjson.dumps(got) == orjson.dumps(stored)  # integers stay integers


def test_the_stored_shapes_cover_every_part_a_gate_writes() -> None:
    shapes = orjson.loads(SHAPES.read_bytes())
    keys = {key for shape in shapes.values() for key in shape}
    assert set(shapes) == set(CASES)
    assert keys >= {"arms", "guardrails", "srm", "latency", "both_arms", "audience", "sources"}
    assert keys >= {"comparison", "limits", "dry_run", "breach", "early_advance", "policy"}
