"""The gate on units decides as it always did, to the bit, over a table of aggregates.

Each case below draws a stage's aggregates unit by unit, as ingest counts them (a few
requests per unit, an exponential number of them, errors, a log-normal latency, its
exposures, conversions and crashes, every count also in the unit's bucket), in the
shapes the gate-loop benchmark writes (``bench/gates.py``) and around them: healthy and
regressed arms, small arms with few buckets, heavy units, no buckets at all, and plans
with every metric tested on units. The gate and both steps of the machine (the gate's,
then a tick) run on it, and what they decide and publish is written as JSON: the
verdict, its evidence, the rollout after and every action with its evidence.

``gate_on_units_golden.json`` holds, per case, the verdict and a SHA-256 of that JSON,
written by the gate as it decides now: a change that moves a
verdict, an evidence's number by one bit, a number's type or a key's place fails here.
A change meant to alter decisions rewrites the file on purpose::

    .venv/bin/python -m tests.unit.core.machine.gate.test_gate_on_units_golden
"""

from __future__ import annotations

import hashlib
import math
import random
import sys
from bisect import bisect_right
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import orjson
import pytest

from controller.core.common.histogram import BUCKET_COUNT, EDGES_MS
from controller.core.machine.gate import evaluate
from controller.core.machine.machine import step
from controller.core.rollouts.plan import DEFAULT_PLAN, Plan, parse_plan
from controller.core.rollouts.rollout import GateInput, Phase, Rollout, TickInput
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.stats.units import (
    CONVERSIONS,
    CRASHES,
    ERRORS,
    EXCEPTIONS,
    EXPOSURES,
    FINE_PER_BIN,
    KIND_COUNT,
    LATENCY,
    REQUESTS,
    UNIT_BUCKETS,
    VALUE_SUM,
    VALUES,
    UnitBuckets,
)

GOLDEN = Path(__file__).with_name("gate_on_units_golden.json")
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Arm:
    """How one arm's units behave."""

    units: int
    per_unit: float = 5.0
    error_rate: float = 0.02
    latency_ms: float = 80.0
    sigma: float = 0.7
    convert: float = 0.0
    crash: float = 0.0
    heavy: float = 0.0
    """The share of units that send twenty times as many requests and fail a third of them."""


@dataclass(frozen=True)
class Case:
    stage: int
    treatment: Arm
    control: Arm
    plan: str = "default"
    buckets: bool = True
    seed: int = 1
    elapsed: float = 1.2
    """The stage's age as a multiple of its minimum duration."""


LATENCY_GUARDRAILS: list[dict[str, object]] = [
    {"metric": "latency_p95", "tolerance": 0.1, "relative": True},
    {"metric": "latency_p99", "tolerance": 0.1, "relative": True},
    {"metric": "latency_exceedance", "edge_ms": 250.0, "tolerance": 0.01},
]
FULL_PLAN: dict[str, object] = {
    "stages": [
        {"percent": 5, "min_duration": "PT1H", "min_units_per_arm": 200},
        {"percent": 25, "min_duration": "PT2H", "min_units_per_arm": 500},
        {"percent": 50, "min_duration": "PT4H", "min_units_per_arm": 1000},
        {"percent": 100, "min_duration": "PT0S", "min_units_per_arm": 0},
    ],
    "guardrails": [
        {"metric": "error_rate"},
        *LATENCY_GUARDRAILS,
        {"metric": "conversion_rate", "tolerance": 0.005},
        {"metric": "conversion_value", "tolerance": 1.0},
        {"metric": "crash_count"},
        {"metric": "exception_count", "dry_run": True},
    ],
    "alpha_weights": {"error_rate": 2.0, "latency_p99": 1.5},
}
EARLY_PLAN = {
    **FULL_PLAN,
    "guardrails": [{"metric": "error_rate", "tolerance": 0.01}, *LATENCY_GUARDRAILS],
    "alpha_weights": None,
    "early_advance": True,
}
PLANS = {"default": DEFAULT_PLAN, "full": parse_plan(FULL_PLAN), "early": parse_plan(EARLY_PLAN)}


def _cases() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    # The benchmark's shapes: the default plan at each compared stage, about half due.
    for stage, (units, share) in enumerate(((15_000, 0.01), (10_000, 0.05), (4_000, 0.25))):
        for seed, scale in ((1, 0.6), (2, 1.0), (3, 1.5)):
            total = round(units * scale)
            t = round(total * share)
            for regressed in (False, True):
                arm = Arm(units=t, per_unit=3 + seed, error_rate=0.06 if regressed else 0.02)
                name = f"bench/stage{stage}/x{scale}/{'regressed' if regressed else 'healthy'}"
                cases[name] = Case(stage, arm, Arm(units=total - t, per_unit=3 + seed), seed=seed)
    cases["bench/stage3/healthy"] = Case(3, Arm(units=2_200), Arm(units=2_100), seed=4)
    cases["bench/stage3/slow"] = Case(3, Arm(units=2_200, latency_ms=130), Arm(units=2_100))
    cases["bench/early"] = Case(1, Arm(units=400), Arm(units=7_000), elapsed=0.5)
    cases["few buckets"] = Case(0, Arm(units=6, per_unit=60), Arm(units=900), seed=5)
    cases["few events"] = Case(0, Arm(units=30, per_unit=2), Arm(units=2_000), seed=6)
    cases["sample ratio mismatch"] = Case(2, Arm(units=600), Arm(units=3_600), seed=7)
    cases["no buckets"] = Case(2, Arm(units=1_200), Arm(units=3_600), buckets=False)
    cases["heavy units"] = Case(2, Arm(units=1_500, heavy=0.02), Arm(units=4_000, heavy=0.02))
    cases["no errors"] = Case(2, Arm(units=1_100, error_rate=0.0), Arm(units=3_300, error_rate=0))
    cases["fast"] = Case(2, Arm(units=1_100, latency_ms=0.2, sigma=0.4), Arm(units=3_000))
    cases["overflow"] = Case(2, Arm(units=1_000, latency_ms=40_000), Arm(units=3_000))
    conversions = {"convert": 0.05, "crash": 0.002}
    for index, (name, treated) in enumerate(
        (
            ("healthy", Arm(units=1_300, **conversions)),
            ("regressed", Arm(units=1_300, error_rate=0.05, convert=0.03, crash=0.01)),
            ("slow", Arm(units=1_300, latency_ms=110, **conversions)),
            ("heavy", Arm(units=1_300, heavy=0.03, **conversions)),
        )
    ):
        control = Arm(units=3_900, **conversions)
        cases[f"full/{name}"] = Case(1, treated, control, plan="full", seed=10 + index)
        cases[f"early/{name}"] = Case(
            1, treated, control, plan="early", seed=20 + index, elapsed=0.4
        )
    cases["full/small"] = Case(
        0, Arm(units=120, **conversions), Arm(units=2_300, **conversions), plan="full"
    )
    return cases


CASES = _cases()


def _arm(rng: random.Random, arm: Arm, *, buckets: bool) -> ArmAggregate:
    """One arm's aggregates, unit by unit, every count also in the unit's bucket."""
    hist = [0] * BUCKET_COUNT
    slots = [0.0] * (UNIT_BUCKETS * KIND_COUNT)
    counts = {"req": 0, "err": 0, "exp": 0, "conv": 0, "cv_n": 0}
    value_sum = value_sq = latency_sum = 0.0
    mu = math.log(arm.latency_ms)
    for _ in range(arm.units):
        base = rng.randrange(UNIT_BUCKETS) * KIND_COUNT
        heavy = rng.random() < arm.heavy
        requests = max(1, round(rng.expovariate(1 / arm.per_unit))) * (20 if heavy else 1)
        error_rate = 0.33 if heavy else arm.error_rate
        errors = sum(1 for _ in range(requests) if rng.random() < error_rate)
        exposures = rng.randint(1, 4)
        converted = sum(1 for _ in range(exposures) if rng.random() < arm.convert)
        crashes = 1 if rng.random() < arm.crash * exposures else 0
        slow = 1.5 if heavy else 1.0
        for _ in range(requests):
            latency = rng.lognormvariate(mu, arm.sigma) * slow
            latency_sum += latency
            index = bisect_right(EDGES_MS, latency)
            hist[index] += 1
            slots[base + LATENCY + index // FINE_PER_BIN] += 1
        values = 0.0
        for _ in range(converted):
            value = round(rng.uniform(5, 60), 2)
            values += value
            value_sum += value
            value_sq += value * value
        for kind, n in (
            (REQUESTS, requests),
            (ERRORS, errors),
            (EXPOSURES, exposures),
            (CONVERSIONS, converted),
            (VALUES, converted),
            (CRASHES, crashes),
            (EXCEPTIONS, crashes),
        ):
            slots[base + kind] += n
        slots[base + VALUE_SUM] += values
        for name, n in (
            ("req", requests),
            ("err", errors),
            ("exp", exposures),
            ("conv", converted),
            ("cv_n", converted),
        ):
            counts[name] += n
    return ArmAggregate(
        exposures=counts["exp"],
        units=arm.units,
        requests=counts["req"],
        errors=counts["err"],
        latency_count=counts["req"],
        latency_sum_ms=latency_sum,
        latency_histogram=tuple(hist),
        conversions=counts["conv"],
        conversion_values=counts["cv_n"],
        conversion_value_sum=value_sum,
        conversion_value_sq=value_sq,
        buckets=UnitBuckets(tuple(slots)) if buckets else None,
    )


def _rollout(case: Case) -> Rollout:
    plan: Plan = PLANS[case.plan]
    stage_started = NOW - plan.stages[case.stage].min_duration * case.elapsed
    return Rollout(
        flag=f"golden.{case.plan}-{case.stage}",
        rollout_id=f"{case.seed:032x}",
        plan=plan,
        phase=Phase.RUNNING,
        stage=case.stage,
        stage_started_at=stage_started,
        salt="0123456789abcdef",
        flag_version=case.stage + 1,
        stage_versions={s: [s + 1] for s in range(case.stage + 1)},
        started_at=stage_started - timedelta(hours=1),
        updated_at=stage_started,
    )


@cache
def _inputs(name: str) -> tuple[Rollout, FlagAggregates]:
    case = CASES[name]
    rng = random.Random(f"{name}/{case.seed}")
    rollout = _rollout(case)
    data = FlagAggregates(
        rollout.flag,
        frozenset({case.stage + 1}),
        _arm(rng, case.treatment, buckets=case.buckets),
        _arm(rng, case.control, buckets=case.buckets),
    )
    return rollout, data


def _published(name: str) -> tuple[str, bytes]:
    """The verdict, and what the gate and the machine decided and published, as JSON."""
    rollout, data = _inputs(name)
    # A fresh copy of the buckets: nothing worked out by an earlier run is reused.
    fresh = replace(data, treatment=_unread(data.treatment), control=_unread(data.control))
    verdict = evaluate(rollout, fresh, NOW)
    moved, gated = step(rollout, GateInput(verdict, NOW))
    assert moved is not None
    after, ticked = step(moved, TickInput(NOW))
    actions = [
        {
            "type": type(action).__name__,
            **{
                key: value.wire() if hasattr(value, "wire") else value
                for key, value in vars_of(action).items()
            },
        }
        for action in (*gated, *ticked)
    ]
    written = {
        "verdict": verdict.kind.value,
        "reason": verdict.reason,
        "breaches": list(verdict.dry_run_breaches),
        "evidence": None if verdict.evidence is None else verdict.evidence.wire(),
        "rollout": orjson.loads(moved.model_dump_json()),
        "after_tick": None if after is None else orjson.loads(after.model_dump_json()),
        "actions": actions,
    }
    return verdict.kind.value, orjson.dumps(written)


def _unread(arm: ArmAggregate) -> ArmAggregate:
    return arm if arm.buckets is None else replace(arm, buckets=UnitBuckets(arm.buckets.totals))


def vars_of(instance: object) -> dict[str, object]:
    """A slotted dataclass's fields by name."""
    return {name: getattr(instance, name) for name in instance.__dataclass_fields__}  # type: ignore[attr-defined]


def _digest(name: str) -> dict[str, str]:
    verdict, written = _published(name)
    return {"verdict": verdict, "sha256": hashlib.sha256(written).hexdigest()}


def test_the_table_is_the_one_stored() -> None:
    assert list(CASES) == list(orjson.loads(GOLDEN.read_bytes()))


def test_the_table_reaches_every_verdict() -> None:
    stored = orjson.loads(GOLDEN.read_bytes())
    assert {s["verdict"] for s in stored.values()} >= {"advance", "hold", "rollback", "pause"}


@pytest.mark.parametrize("name", ["bench/stage1/x1.0/healthy", "full/heavy"])
def test_the_guardrails_are_tested_on_units(name: str) -> None:
    evidence = orjson.loads(_published(name)[1])["evidence"]
    tests = evidence["guardrails"].values()
    assert {t["unit_of_analysis"] for t in tests if t != "insufficient data"} == {"unit"}


@pytest.mark.parametrize("name", list(CASES))
def test_the_gate_decides_and_publishes_as_before(name: str) -> None:
    stored = orjson.loads(GOLDEN.read_bytes())[name]
    assert _digest(name) == stored


if __name__ == "__main__":
    table = {name: _digest(name) for name in CASES}
    GOLDEN.write_bytes(orjson.dumps(table, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"{len(table)} cases written to {GOLDEN}", file=sys.stderr)
