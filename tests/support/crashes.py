"""Seeded rollouts guarded on crashes, on traffic where a few units crash-loop.

Crashes cluster by unit far more than requests do: most units never crash, some crash
now and then, and a few crash-loop (a device that crashes on start, restarts, evaluates
its flags again and crashes again, hundreds of times). Each stage here draws a population
of units (:class:`CrashShape`), assigns each to an arm by the stage's split, spreads each
unit's exposures (flag evaluations) over the stage, and gives each exposure a Poisson
number of crashes at its unit's rate: an ordinary unit's rate is the base rate times a
log-normal, a crash-looping unit's one crash per exposure. Treatment units' rates are
multiplied by ``treatment_factor`` (1: identical arms).

The arms' aggregates have the store's shape, unit buckets included (each unit's bucket
drawn uniformly, as the store's CRC-32 of the unit id is), and are judged by the real
gate: :func:`evaluate` for the plan (crash_count its only guardrail), and, at the same
looks and the same level, by the Poisson test that takes every crash as independent
(``crash_count@poisson``: what a counting-process test assumes), for comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from controller.core.machine.gate import evaluate
from controller.core.rollouts.plan import DEFAULT_PLAN, Plan
from controller.core.rollouts.plan_parts import Guardrail
from controller.core.rollouts.rollout import VerdictKind
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.stats.sequential import count_rate_test
from controller.core.stats.units import (
    CRASHES,
    EXCEPTIONS,
    EXPOSURES,
    KIND_COUNT,
    UNIT_BUCKETS,
    UnitBuckets,
)
from tests.support.clustered import HEAVY, Tier, look_counts
from tests.support.simulation import T0, Outcome, _rollout

SLOTS = UNIT_BUCKETS * KIND_COUNT
CRASH_PLAN = DEFAULT_PLAN.model_copy(
    update={
        "name": "crashes",
        "guardrails": [Guardrail(metric="crash_count")],
        "alpha_weights": None,
    }
)
"""The default plan's stages and alpha (0.05 over the rollout), guarded on crashes alone."""


@dataclass(frozen=True)
class CrashShape:
    """How a stage's units differ in exposures and crashes."""

    tiers: tuple[Tier, ...] = HEAVY
    """Exposures per unit: 80% 1-3, 19% 10-50, 1% 300-2,000."""
    crash_rate: float = 0.01
    """An ordinary unit's mean crashes per exposure."""
    crash_sigma: float = 1.0
    """Ordinary units' rates are log-normal with this sigma (mean kept)."""
    looping_share: float = 0.002
    looping_exposures: tuple[int, int] = (50, 500)
    looping_rate: float = 1.0
    """A share of units crash-looping: this many exposures, this many crashes per exposure."""
    units: int = 10_000
    """Units arriving in 30 minutes (the default plan's stages: 10k, 20k, 40k, 80k)."""


@dataclass
class _Stage:
    """A stage's exposures in arrival order: each one's arm, unit, slot base and crashes."""

    arm: np.ndarray
    unit: np.ndarray
    base: np.ndarray
    crashes: np.ndarray


def _population(
    rng: np.random.Generator, shape: CrashShape, units: int, percent: float, factor: float
) -> _Stage:
    shares = np.array([t.share for t in shape.tiers])
    tier = rng.choice(len(shape.tiers), size=units, p=shares / shares.sum())
    lows = np.array([t.low for t in shape.tiers])[tier]
    highs = np.array([t.high for t in shape.tiers])[tier]
    counts = rng.integers(lows, highs + 1)
    sigma = shape.crash_sigma
    rate = shape.crash_rate * np.exp(rng.normal(-(sigma**2) / 2, sigma, units))
    looping = rng.random(units) < shape.looping_share
    low, high = shape.looping_exposures
    counts[looping] = rng.integers(low, high + 1, int(looping.sum()))
    rate[looping] = shape.looping_rate
    treated = rng.random(units) < percent / 100
    rate = np.where(treated, rate * factor, rate)
    bucket = rng.integers(0, UNIT_BUCKETS, units)
    unit = np.repeat(np.arange(units), counts)
    unit = unit[np.argsort(rng.random(unit.size), kind="stable")]
    return _Stage(
        arm=np.where(treated[unit], 0, 1),
        unit=unit,
        base=bucket[unit] * KIND_COUNT,
        crashes=rng.poisson(rate[unit]),
    )


@dataclass
class _Arm:
    seen: np.ndarray
    slots: np.ndarray = field(default_factory=lambda: np.zeros(SLOTS))
    exposures: int = 0
    crashes: int = 0
    distinct: int = 0

    def add(self, stage: _Stage, rows: np.ndarray) -> None:
        if rows.size == 0:
            return
        base, crashes = stage.base[rows], stage.crashes[rows]
        self.exposures += rows.size
        self.crashes += int(crashes.sum())
        self.slots += np.bincount(base + EXPOSURES, minlength=SLOTS)
        for kind in (CRASHES, EXCEPTIONS):  # every crash is an exception too
            self.slots += np.bincount(base + kind, weights=crashes, minlength=SLOTS)
        units = stage.unit[rows]
        new = np.unique(units[~self.seen[units]])
        self.seen[new] = True
        self.distinct += new.size

    def aggregate(self) -> ArmAggregate:
        return ArmAggregate(
            exposures=self.exposures,
            units=self.distinct,
            buckets=UnitBuckets(tuple(self.slots.tolist())),
        )


def simulate_crashes(
    shape: CrashShape,
    *,
    seed: int,
    plan: Plan = CRASH_PLAN,
    treatment_factor: float = 1.0,
    growth: float = 0.05,
) -> dict[str, Outcome]:
    """Run ``plan``'s stages on ``shape``'s traffic: how the gate (``plan``) and the Poisson
    test (``crash_count@poisson``) ended. ``Outcome.seconds`` counts exposures."""
    rng = np.random.default_rng(seed)
    outcomes: dict[str, Outcome] = {}
    level = plan.alpha_for("crash_count")
    elapsed = 0
    for index, stage in enumerate(plan.stages):
        if stage.percent >= 100:
            break
        duration = stage.min_duration.total_seconds()
        units = max(1000, round(shape.units * duration / 1800))
        exposures = _population(rng, shape, units, stage.percent, treatment_factor)
        arms = (_Arm(np.zeros(units, bool)), _Arm(np.zeros(units, bool)))
        started, last, advanced = T0 + timedelta(hours=index), 0, False
        for count in look_counts(exposures.arm.size, growth=growth):
            rows = np.arange(last, count)
            for a, arm in enumerate(arms):
                arm.add(exposures, rows[exposures.arm[rows] == a])
            last, at = count, float(elapsed + count)
            t, c = arms
            poisson = count_rate_test(t.crashes, t.exposures, c.crashes, c.exposures, alpha=level)
            if poisson.regressed and "crash_count@poisson" not in outcomes:
                outcomes["crash_count@poisson"] = Outcome("crash_count", index, at)
            if "plan" not in outcomes:
                data = FlagAggregates("sim", frozenset({index + 1}), t.aggregate(), c.aggregate())
                now = started + timedelta(seconds=duration * count / exposures.arm.size)
                verdict = evaluate(_rollout(plan, index, started), data, now)
                if verdict.kind in (VerdictKind.ROLLBACK, VerdictKind.PAUSE):
                    outcomes["plan"] = Outcome(verdict.evidence.breach or "srm", index, at)
                advanced = verdict.kind is VerdictKind.ADVANCE
            if len(outcomes) == 2 or advanced:
                break
        if len(outcomes) == 2:
            return outcomes
        elapsed += last
    done = Outcome(None, len(plan.stages) - 1, float(elapsed))
    return {name: outcomes.get(name, done) for name in ("plan", "crash_count@poisson")}


def crash_share(shape: CrashShape) -> float:
    """The share of crashes from crash-looping units, in expectation."""
    tiers = sum(t.share * (t.low + t.high) / 2 for t in shape.tiers)
    ordinary = (1 - shape.looping_share) * tiers * shape.crash_rate
    looping = shape.looping_share * math.fsum(shape.looping_exposures) / 2 * shape.looping_rate
    return looping / (ordinary + looping)
