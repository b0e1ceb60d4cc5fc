"""Seeded rollouts through the real gate: identical arms (A/A) and regressions.

A simulated service sends requests at a steady rate; each is an exposure of a
new unit, fails with the arm's error rate, takes a latency from a log-normal
body with rare long stalls, and converts with the arm's conversion rate, at a
heavy-tailed (log-normal) value. Between two looks each arm's increments are
drawn in bulk (a Poisson count, then per request its error, conversion, a
latency bucket drawn from the histogram's own buckets, and its unit's bucket,
drawn uniformly as the store's hash of a unit id is; log-normal values) and
summed field by field as the store's flush does; an arm's aggregate is what
:meth:`ArmAggregate.from_fields` reads of those fields (``Arm.fields``; a test
holds the two equal), so the gate sees aggregates of exactly the daemon's shape.

The gate looks at the daemon's cadence (``engine.gate_interval_seconds``,
0.25 s) while a look adds more than ``growth`` (1% in ``bench/aa.py``) to the
stage's sample, i.e. through the first 25 s of a stage; later, once per
``growth`` of the sample, so that a stage of hours costs hundreds of looks
rather than tens of thousands. A look then differs from the previous one by
1% of its data, so the looks skipped in between could rarely cross where
these do not: the figures are a close lower bound of the daemon's.

Each stream of data is judged by several rollouts at once: the plan under
test through :func:`evaluate` (every step of the gate), and one plan per
metric with that metric as its only guardrail through
:func:`guardrail_result` (the gate's step 1, which is what rolls back).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from controller.core.common.histogram import BUCKET_COUNT, EDGES_MS, bucket_bounds
from controller.core.machine.gate import evaluate
from controller.core.rollouts.plan import DEFAULT_PLAN, Plan
from controller.core.rollouts.plan_parts import Guardrail
from controller.core.rollouts.rollout import Phase, Rollout, VerdictKind
from controller.core.stats.aggregates import HIST_PREFIX, ArmAggregate, FlagAggregates
from controller.core.stats.guardrails import guardrail_result
from controller.core.stats.units import (
    CONVERSIONS,
    ERRORS,
    EXPOSURES,
    FINE_PER_BIN,
    KIND_COUNT,
    LATENCY,
    REQUESTS,
    UNIT_BUCKETS,
    VALUE_SUM,
    VALUES,
    UnitBuckets,
    slot_field,
)
from controller.settings import EngineSettings

METRICS = (
    "error_rate",
    "conversion_rate",
    "conversion_value",
    "latency_p95",
    "latency_p99",
    "latency_exceedance",
)
EXCEEDANCE_EDGE_MS = 250.0
"""Above the body, inside the stalls: the share above it is the stalls' share."""
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SLOTS = UNIT_BUCKETS * KIND_COUNT


@dataclass(frozen=True)
class Service:
    """What one arm's requests look like."""

    error_rate: float = 0.02
    conversion_rate: float = 0.05
    value_median: float = 20.0
    value_sigma: float = 1.5
    latency_median_ms: float = 20.0
    latency_sigma: float = 0.5
    stall_share: float = 0.005
    stall_median_ms: float = 400.0
    stall_sigma: float = 0.6

    def regressed(self, metric: str, factor: float = 2.0) -> Service:
        """This service made ``factor`` times worse on ``metric``."""
        if metric == "error_rate":
            return replace(self, error_rate=self.error_rate * factor)
        if metric == "conversion_rate":
            return replace(self, conversion_rate=self.conversion_rate / factor)
        if metric == "conversion_value":
            return replace(self, value_median=self.value_median / factor)
        if metric in ("latency_p95", "latency_p99"):
            return replace(
                self,
                latency_median_ms=self.latency_median_ms * factor,
                stall_median_ms=self.stall_median_ms * factor,
            )
        if metric == "latency_exceedance":
            return replace(self, stall_share=self.stall_share * factor)
        raise ValueError(f"no regression defined for {metric!r}")

    def bucket_shares(self) -> np.ndarray:
        """The chance of each histogram bucket: the body and stall log-normals' mixture."""

        def cdf(ms: float) -> float:
            body = _lognormal_cdf(ms, self.latency_median_ms, self.latency_sigma)
            stall = _lognormal_cdf(ms, self.stall_median_ms, self.stall_sigma)
            return (1.0 - self.stall_share) * body + self.stall_share * stall

        below = np.array([0.0, *(cdf(edge) for edge in EDGES_MS), 1.0])
        shares: np.ndarray = np.diff(below)
        normalised: np.ndarray = shares / shares.sum()
        return normalised


def _lognormal_cdf(x: float, median: float, sigma: float) -> float:
    return 0.5 * math.erfc(-(math.log(x) - math.log(median)) / (sigma * math.sqrt(2.0)))


_MIDPOINTS = np.array(
    [math.sqrt(max(lo, 0.01) * (hi if math.isfinite(hi) else lo)) for lo, hi in
     (bucket_bounds(i) for i in range(BUCKET_COUNT))]
)  # fmt: skip


class Arm:
    """One arm's running sums, as the store holds them: each look's increments added field
    by field (the histogram's buckets and the unit buckets' slots as arrays)."""

    def __init__(self, service: Service) -> None:
        self.service, self.shares = service, service.bucket_shares()
        self.hist = np.zeros(BUCKET_COUNT, dtype=np.int64)
        self.slots = np.zeros(SLOTS)
        self.requests = self.errors = self.conversions = 0
        self.latency_sum = self.value_sum = self.value_sq = 0.0
        self.units = 0

    def serve(self, rng: np.random.Generator, expected_requests: float) -> int:
        """Add a Poisson number of requests with ``expected_requests`` mean; return how many.

        Each request is a new unit's, counted in a bucket of units drawn uniformly (as the
        store's hash of a unit id is), so the gate tests these arms on units too.
        """
        n = int(rng.poisson(expected_requests))
        if n == 0:
            return 0
        s = self.service
        fine = rng.choice(BUCKET_COUNT, size=n, p=self.shares)
        counts = np.bincount(fine, minlength=BUCKET_COUNT)
        failed = rng.random(n) < s.error_rate
        converted = rng.random(n) < s.conversion_rate
        conversions = int(converted.sum())
        values = rng.lognormal(math.log(s.value_median), s.value_sigma, size=conversions)
        self.requests += n
        self.errors += int(failed.sum())
        self.conversions += conversions
        self.latency_sum += float(counts @ _MIDPOINTS)
        self.value_sum += float(values.sum())
        self.value_sq += float(values @ values)
        self.hist += counts
        self.slots += _unit_buckets(rng, n, fine, failed, converted, values)
        self.units += n
        return n

    def aggregate(self) -> ArmAggregate:
        """The arm as :meth:`ArmAggregate.from_fields` reads its store fields."""
        return ArmAggregate(
            exposures=self.requests,
            units=self.units,
            requests=self.requests,
            errors=self.errors,
            latency_count=self.requests,
            latency_sum_ms=self.latency_sum,
            latency_histogram=tuple(self.hist.tolist()),
            conversions=self.conversions,
            conversion_values=self.conversions,
            conversion_value_sum=self.value_sum,
            conversion_value_sq=self.value_sq,
            buckets=UnitBuckets(tuple(self.slots.tolist())) if self.slots.any() else None,
        )

    def fields(self) -> dict[str, float]:
        """The arm's store fields, as the flush has summed them (zero fields left out)."""
        counted = {
            "exp": self.requests,
            "req": self.requests,
            "err": self.errors,
            "lat_n": self.requests,
            "conv": self.conversions,
            "cv_n": self.conversions,
            "lat_sum": self.latency_sum,
            "cv_sum": self.value_sum,
            "cv_sq": self.value_sq,
        }
        hist = {f"{HIST_PREFIX}{i}": int(self.hist[i]) for i in np.flatnonzero(self.hist)}
        slots = {slot_field(int(i)): float(self.slots[i]) for i in np.flatnonzero(self.slots)}
        return {**{k: v for k, v in counted.items() if v}, **hist, **slots}


def _unit_buckets(
    rng: np.random.Generator,
    n: int,
    fine: np.ndarray,
    failed: np.ndarray,
    converted: np.ndarray,
    values: np.ndarray,
) -> np.ndarray:
    """The unit buckets' increments of ``n`` requests, each from a new unit, by slot."""
    base = rng.integers(0, UNIT_BUCKETS, n) * KIND_COUNT
    worth = np.zeros(n)
    worth[converted] = values
    slots = np.zeros(SLOTS)
    for kind, weight in (
        (EXPOSURES, None),
        (REQUESTS, None),
        (ERRORS, failed),
        (CONVERSIONS, converted),
        (VALUES, converted),
        (VALUE_SUM, worth),
    ):
        slots += np.bincount(base + kind, weights=weight, minlength=slots.size)
    slots += np.bincount(base + LATENCY + fine // FINE_PER_BIN, minlength=slots.size)
    return slots


def guardrail_for(metric: str) -> Guardrail:
    """The guardrail a plan would have on ``metric``: latency quantiles with 10% tolerance."""
    if metric in ("latency_p95", "latency_p99"):
        return Guardrail(metric=metric, tolerance=0.10, relative=True)  # type: ignore[arg-type]
    if metric == "latency_exceedance":
        return Guardrail(metric="latency_exceedance", edge_ms=EXCEEDANCE_EDGE_MS)
    return Guardrail(metric=metric)  # type: ignore[arg-type]


def single_plans(base: Plan = DEFAULT_PLAN) -> dict[str, Plan]:
    """One plan per metric: ``base``'s stages with that metric as the only guardrail (its
    whole alpha: a weight of ``base``'s has no other guardrail to weigh against)."""
    return {
        m: base.model_copy(
            update={"name": m, "guardrails": [guardrail_for(m)], "alpha_weights": None}
        )
        for m in METRICS
    }


@dataclass(frozen=True)
class Outcome:
    """How one rollout of the stream ended."""

    stopped: str | None
    """The guardrail that rolled back or paused, ``srm``, or None: the plan completed."""
    stage: int
    seconds: float
    """From the rollout's start to the decision."""


def _rollout(plan: Plan, stage: int, started: datetime) -> Rollout:
    return Rollout(
        flag="sim",
        rollout_id="sim",
        plan=plan,
        phase=Phase.RUNNING,
        stage=stage,
        stage_started_at=started,
        salt="s",
        flag_version=stage + 1,
        stage_versions={stage: [stage + 1]},
        started_at=T0,
        updated_at=started,
    )


def look_times(min_duration: float, cadence: float, growth: float) -> list[float]:
    """Seconds into a stage of the looks: ``cadence`` apart, ``growth`` apart in relative terms."""
    times, t = [], cadence
    while t < min_duration:
        times.append(t)
        t = max(t + cadence, t * (1.0 + growth))
    times.append(max(min_duration, cadence))
    return times


def simulate(
    plan: Plan,
    singles: dict[str, Plan],
    *,
    seed: int,
    requests_per_second: float = 200.0,
    control: Service | None = None,
    treatment: Service | None = None,
    growth: float = 0.01,
) -> dict[str, Outcome]:
    """Run ``plan`` and every plan of ``singles`` on one stream; how each ended.

    The stream moves through ``plan``'s stages as its gate advances; a
    single-guardrail plan stops at its guardrail's first regression.
    """
    rng = np.random.default_rng(seed)
    control = control or Service()
    treatment = treatment or control
    cadence = EngineSettings().gate_interval_seconds
    outcomes: dict[str, Outcome] = {}
    elapsed = 0.0
    for index, stage in enumerate(plan.stages):
        if stage.percent >= 100:
            break  # no control arm: nothing is compared
        arms = (Arm(treatment), Arm(control))
        shares = (stage.percent / 100, 1.0 - stage.percent / 100)
        started, last = T0 + timedelta(seconds=elapsed), 0.0
        advanced = False
        for t in look_times(stage.min_duration.total_seconds(), cadence, growth):
            for arm, share in zip(arms, shares, strict=True):
                arm.serve(rng, requests_per_second * share * (t - last))
            last, at = t, elapsed + t
            data = FlagAggregates(
                flag="sim", versions=frozenset({index + 1}),
                treatment=arms[0].aggregate(), control=arms[1].aggregate(),
            )  # fmt: skip
            for metric, single in singles.items():
                if metric in outcomes:
                    continue
                result = guardrail_result(single.guardrails[0], data, single)
                if result is not None and result.regressed:
                    outcomes[metric] = Outcome(metric, index, at)
            if "plan" not in outcomes:
                now = started + timedelta(seconds=t)
                verdict = evaluate(_rollout(plan, index, started), data, now)
                if verdict.kind in (VerdictKind.ROLLBACK, VerdictKind.PAUSE):
                    stopped = verdict.evidence.breach or "srm"
                    outcomes["plan"] = Outcome(stopped, index, at)
                advanced = verdict.kind is VerdictKind.ADVANCE
            if len(outcomes) == len(singles) + 1 or advanced:
                break
        if len(outcomes) == len(singles) + 1:
            return outcomes
        elapsed += last
    done = Outcome(None, len(plan.stages) - 1, elapsed)
    return {name: outcomes.get(name, done) for name in ("plan", *singles)}
