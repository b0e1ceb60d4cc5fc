"""Seeded rollouts on the traffic real services send: units that send many requests.

:mod:`tests.support.simulation` draws every request from a new unit, which is the one
shape under which requests are independent. Real traffic is made of units (users) that
differ: most send a few requests, some send dozens, a few hundreds or thousands (power
users, bots); some fail most of theirs (a broken account), some are slow on every one
(a slow network). A stage's requests then cluster by unit, and a test that takes them as
independent rolls back identical arms far more often than its alpha.

Here each stage draws a population of units (:class:`Shape` says how they differ),
assigns each unit to an arm by the stage's split (a unit stays in its arm), spreads each
unit's requests uniformly over the stage, and lets the gate look as the requests arrive.
Each request is also an exposure, converts with its unit's propensity, and takes its
unit's speed times a log-normal body with rare stalls. The arms' aggregates have the
store's exact shape, unit buckets included (each unit's bucket drawn uniformly, as the
store's CRC-32 of the unit id is, independently of the arm), and are judged by the real
gate: :func:`evaluate` for the plan under test, :func:`guardrail_result` for one plan per
metric. Every figure is for identical arms unless a regression is asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np

from controller.core.common.histogram import BUCKET_COUNT, EDGES_MS
from controller.core.machine.gate import evaluate
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.rollout import VerdictKind
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.stats.guardrails import guardrail_result
from controller.core.stats.heaviest.counts import HEAVIEST_KEPT, Heaviest, UnitCount
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
    unit_bucket,
)
from tests.support.simulation import T0, Outcome, _rollout

SLOTS = UNIT_BUCKETS * KIND_COUNT


@dataclass(frozen=True)
class Tier:
    """A share of the units, each sending a uniform number of requests in [low, high]."""

    share: float
    low: int
    high: int


@dataclass(frozen=True)
class Shape:
    """How a stage's units differ from each other."""

    name: str
    tiers: tuple[Tier, ...]
    error_rate: float = 0.01
    """Each ordinary unit's chance that a request fails."""
    failing_share: float = 0.0
    failing_rate: float = 0.5
    """A share of units that fail this share of their requests (broken accounts)."""
    speed_sigma: float = 0.0
    """Units' speed factors are log-normal with this sigma (0: all alike)."""
    bots_share: float = 0.0
    bot_requests: int = 5000
    """A share of units that send this many requests, none of which fails or converts."""
    dominant: tuple[float, float] = (0.0, 0.0)
    dominant_error_rate: float = 0.2
    """One unit that sends a share of all the stage's requests drawn uniformly in this range
    (a retrying client, a crawler, a synthetic monitor with a fixed id), failing this share
    of them, in either arm with even odds whatever the split; (0, 0): none."""
    conversion_rate: float = 0.05
    conversion_sigma: float = 0.5
    """Each unit's conversion propensity: the rate times a log-normal of this sigma."""
    value_median: float = 20.0
    value_unit_sigma: float = 1.0
    """Each unit's typical conversion value varies log-normally by this sigma."""
    units: int = 10_000
    """Units that arrive in 30 minutes: a stage draws its share of them by its length (the
    default plan's stages see 10,000, 20,000, 40,000 and 80,000)."""


ONE = (Tier(1.0, 1, 1),)
HEAVY = (Tier(0.80, 1, 3), Tier(0.19, 10, 50), Tier(0.01, 300, 2000))
LIGHT_HEAVY = (Tier(0.80, 1, 3), Tier(0.198, 10, 50), Tier(0.002, 300, 2000))
NO_HEAVY = (Tier(0.80, 1, 3), Tier(0.20, 10, 50))

SHAPES: dict[str, Shape] = {
    shape.name: shape
    for shape in (
        Shape(
            "independent",
            ONE,
            error_rate=0.02,
            conversion_sigma=0.0,
            value_unit_sigma=0.0,
            units=20_000,
        ),
        Shape("heavy_failing", HEAVY, failing_share=0.02, speed_sigma=0.3),
        Shape("light_failing", LIGHT_HEAVY, failing_share=0.005, speed_sigma=0.3),
        Shape("no_heavy_failing", NO_HEAVY, failing_share=0.02, speed_sigma=0.3),
        Shape("heavy_uniform", HEAVY, speed_sigma=0.0, conversion_sigma=0.0, value_unit_sigma=0),
        Shape("slow_units", HEAVY, speed_sigma=0.7),
        Shape("bots", HEAVY, failing_share=0.02, speed_sigma=0.3, bots_share=0.001),
        Shape("one_unit", HEAVY, failing_share=0.02, speed_sigma=0.3, dominant=(0.3, 0.5)),
    )
}
"""The review's shapes: one request per unit; heavy units with failing ones; fewer of each;
no heavy units; heavy units that fail alike; units of different speed; bots; one unit
sending 30-50% of all requests, a fifth of them failing, in either arm."""


@dataclass
class _Requests:
    """A stage's requests, in time order: each one's arm, unit, slot base and outcome."""

    arm: np.ndarray
    unit: np.ndarray
    base: np.ndarray
    error: np.ndarray
    fine: np.ndarray
    latency: np.ndarray
    converted: np.ndarray
    value: np.ndarray
    buckets: np.ndarray
    """Each unit's bucket of units."""


def unit_id(index: int, bucket: int) -> str:
    """An id for unit ``index`` that the store would hash to ``bucket`` (the draws give each
    unit its bucket; its id, needed only where a unit is listed among the heaviest, is the
    first ``u<index>``, ``u<index>.1``, ... whose CRC-32 says so)."""
    name, tried = f"u{index}", 0
    while unit_bucket(name) != bucket:
        tried += 1
        name = f"u{index}.{tried}"
    return name


@dataclass(frozen=True)
class Treated:
    """What treatment does to its units: factors on their error propensity, their latency,
    their conversion propensity and their conversions' values (all 1: identical arms)."""

    errors: float = 1.0
    latency: float = 1.0
    conversions: float = 1.0
    values: float = 1.0


def _population(
    rng: np.random.Generator,
    shape: Shape,
    units: int,
    percent: float,
    treatment_factor: float,
    changed: Treated | None = None,
) -> _Requests:
    """Draw a stage's units and their requests (``treatment_factor`` scales treatment units'
    error propensity: 1 for identical arms; ``changed``, where given, replaces it and
    changes their latency and conversions too). The factors apply after every draw: a seed
    draws the same units whatever they are."""
    treated_as = changed or Treated(errors=treatment_factor)
    treatment_factor = treated_as.errors
    n = units
    shares = np.array([t.share for t in shape.tiers])
    tier = rng.choice(len(shape.tiers), size=n, p=shares / shares.sum())
    lows = np.array([t.low for t in shape.tiers])[tier]
    highs = np.array([t.high for t in shape.tiers])[tier]
    counts = rng.integers(lows, highs + 1)
    bots = rng.random(n) < shape.bots_share
    counts[bots] = shape.bot_requests
    treated = rng.random(n) < percent / 100
    propensity = np.where(rng.random(n) < shape.failing_share, shape.failing_rate, shape.error_rate)
    propensity = np.where(bots, 0.0, propensity)
    if shape.dominant[1] > 0:
        share = rng.uniform(*shape.dominant)
        counts[0] = max(1, round(share / (1.0 - share) * counts[1:].sum()))
        treated[0] = rng.random() < 0.5
        propensity[0] = shape.dominant_error_rate
    propensity = np.minimum(1.0, np.where(treated, propensity * treatment_factor, propensity))
    speed = np.exp(rng.normal(0.0, shape.speed_sigma, n)) if shape.speed_sigma else np.ones(n)
    converts = shape.conversion_rate * np.exp(
        rng.normal(-(shape.conversion_sigma**2) / 2, shape.conversion_sigma, n)
    )
    converts = np.where(treated, converts * treated_as.conversions, converts)
    converts = np.where(bots, 0.0, np.minimum(converts, 1.0))
    scale = shape.value_median * np.exp(rng.normal(0.0, shape.value_unit_sigma, n))
    scale = np.where(treated, scale * treated_as.values, scale)
    bucket = rng.integers(0, UNIT_BUCKETS, n)
    unit = np.repeat(np.arange(n), counts)
    order = np.argsort(rng.random(unit.size), kind="stable")  # arrivals spread over the stage
    unit = unit[order]
    total = unit.size
    stall = rng.random(total) < 0.005
    speed = np.where(treated, speed * treated_as.latency, speed)
    latency = speed[unit] * np.where(
        stall, rng.lognormal(math.log(400.0), 0.6, total), rng.lognormal(math.log(20.0), 0.5, total)
    )
    converted = rng.random(total) < converts[unit]
    value = np.where(converted, scale[unit] * rng.lognormal(0.0, 1.0, total), 0.0)
    return _Requests(
        arm=np.where(treated[unit], 0, 1),
        unit=unit,
        base=bucket[unit] * KIND_COUNT,
        error=rng.random(total) < propensity[unit],
        fine=np.searchsorted(np.asarray(EDGES_MS), latency, side="right"),
        latency=latency,
        converted=converted,
        value=value,
        buckets=bucket,
    )


@dataclass
class _Arm:
    """One arm's running sums as the store holds them, unit buckets included."""

    units: int
    seen: np.ndarray
    hist: np.ndarray = field(default_factory=lambda: np.zeros(BUCKET_COUNT, dtype=np.int64))
    slots: np.ndarray = field(default_factory=lambda: np.zeros(SLOTS))
    requests: int = 0
    errors: int = 0
    conversions: int = 0
    latency_sum: float = 0.0
    value_sum: float = 0.0
    value_sq: float = 0.0
    distinct: int = 0
    unit_requests: np.ndarray | None = None
    unit_errors: np.ndarray | None = None
    buckets: np.ndarray | None = None
    ids: dict[int, str] = field(default_factory=dict)

    def add(self, r: _Requests, rows: np.ndarray) -> None:
        """Count the requests ``rows`` of ``r`` (all of this arm)."""
        if rows.size == 0:
            return
        error, converted, value = r.error[rows], r.converted[rows], r.value[rows]
        base, fine = r.base[rows], r.fine[rows]
        self.requests += rows.size
        self.errors += int(error.sum())
        self.conversions += int(converted.sum())
        self.latency_sum += float(r.latency[rows].sum())
        self.value_sum += float(value.sum())
        self.value_sq += float((value * value).sum())
        self.hist += np.bincount(fine, minlength=BUCKET_COUNT)
        slots = self.slots
        for kind, weight in (
            (EXPOSURES, None),
            (REQUESTS, None),
            (ERRORS, error),
            (CONVERSIONS, converted),
            (VALUES, converted),
            (VALUE_SUM, value),
        ):
            slots += np.bincount(base + kind, weights=weight, minlength=SLOTS)
        slots += np.bincount(base + LATENCY + fine // FINE_PER_BIN, minlength=SLOTS)
        units = r.unit[rows]
        self._count_units(r, units, error)
        new = np.unique(units[~self.seen[units]])
        self.seen[new] = True
        self.distinct += new.size

    def _count_units(self, r: _Requests, units: np.ndarray, error: np.ndarray) -> None:
        """Each unit's requests and errors, exact, as the store counts them."""
        size = self.seen.size
        if self.unit_requests is None or self.unit_errors is None:
            self.unit_requests = np.zeros(size, dtype=np.int64)
            self.unit_errors = np.zeros(size, dtype=np.int64)
            self.buckets = r.buckets
        self.unit_requests += np.bincount(units, minlength=size)
        self.unit_errors += np.bincount(units, weights=error, minlength=size).astype(np.int64)

    def heaviest(self) -> Heaviest:
        """The arm's :data:`HEAVIEST_KEPT` units with the most requests, each with its exact
        counts and an id hashed to its bucket: the store's list, from one partition."""
        counts, errors, buckets = self.unit_requests, self.unit_errors, self.buckets
        if counts is None or errors is None or buckets is None:
            return Heaviest()
        keep = min(HEAVIEST_KEPT, int(np.count_nonzero(counts)))
        if keep == 0:
            return Heaviest()
        top = np.argpartition(-counts, keep - 1)[:keep] if keep < counts.size else np.arange(keep)
        listed = []
        for i in (int(x) for x in top):
            if i not in self.ids:
                self.ids[i] = unit_id(i, int(buckets[i]))
            listed.append(UnitCount(self.ids[i], int(counts[i]), int(errors[i])))
        return Heaviest(tuple(sorted(listed, key=lambda u: (-u.requests, u.unit))))

    def aggregate(self, *, on_units: bool = True) -> ArmAggregate:
        return ArmAggregate(
            exposures=self.requests,
            units=self.distinct,
            requests=self.requests,
            errors=self.errors,
            latency_count=self.requests,
            latency_sum_ms=self.latency_sum,
            latency_histogram=tuple(int(x) for x in self.hist),
            conversions=self.conversions,
            conversion_values=self.conversions,
            conversion_value_sum=self.value_sum,
            conversion_value_sq=self.value_sq,
            buckets=UnitBuckets(tuple(self.slots.tolist())) if on_units else None,
            heaviest=self.heaviest() if on_units else Heaviest(),
        )


def look_counts(total: int, first: int = 200, growth: float = 0.05) -> list[int]:
    """How many of a stage's requests have arrived at each look: ``growth`` apart."""
    looks, at = [], float(first)
    while at < total:
        looks.append(int(at))
        at *= 1.0 + growth
    looks.append(total)
    return looks


@dataclass(frozen=True)
class Judged:
    """What a stream is judged by: the plan under test and one plan per metric."""

    plan: Plan
    singles: dict[str, Plan]
    independent: bool = False
    """Judge the single plans as if requests were independent too (``<metric>@requests``)."""


def simulate_clustered(
    judged: Judged,
    shape: Shape,
    *,
    seed: int,
    treatment_factor: float = 1.0,
    growth: float = 0.05,
    treated: Treated | None = None,
) -> dict[str, Outcome]:
    """Run the plan's stages on ``shape``'s traffic; how each plan ended (see the module).

    ``treatment_factor`` scales treatment units' error propensity, ``treated`` (where
    given, in its place) their latency and conversions too. ``Outcome.seconds`` counts
    requests here, not seconds: the stream's requests so far.
    """
    rng = np.random.default_rng(seed)
    names = [*judged.singles, *(f"{m}@requests" for m in judged.singles if judged.independent)]
    outcomes: dict[str, Outcome] = {}
    elapsed = 0
    for index, stage in enumerate(judged.plan.stages):
        if stage.percent >= 100:
            break
        duration = stage.min_duration.total_seconds()
        units = max(1000, round(shape.units * duration / 1800))
        r = _population(rng, shape, units, stage.percent, treatment_factor, treated)
        arms = (_Arm(units, np.zeros(units, bool)), _Arm(units, np.zeros(units, bool)))
        started, last, advanced = T0 + timedelta(hours=index), 0, False
        for count in look_counts(r.arm.size, growth=growth):
            rows = np.arange(last, count)
            for a, arm in enumerate(arms):
                arm.add(r, rows[r.arm[rows] == a])
            last = count
            data = FlagAggregates("sim", frozenset({index + 1}),
                                  arms[0].aggregate(), arms[1].aggregate())  # fmt: skip
            now = started + timedelta(seconds=duration * count / r.arm.size)
            look = _Look(index, elapsed + count, started, now)
            _judge_singles(judged, data, arms, outcomes, look)
            if "plan" not in outcomes:
                verdict = evaluate(_rollout(judged.plan, index, started), data, now)
                if verdict.kind in (VerdictKind.ROLLBACK, VerdictKind.PAUSE):
                    stopped = verdict.evidence.breach or "srm"
                    outcomes["plan"] = Outcome(stopped, index, float(elapsed + count))
                advanced = verdict.kind is VerdictKind.ADVANCE
            if len(outcomes) == len(names) + 1 or advanced:
                break
        if len(outcomes) == len(names) + 1:
            return outcomes
        elapsed += last
    done = Outcome(None, len(judged.plan.stages) - 1, float(elapsed))
    return {name: outcomes.get(name, done) for name in ("plan", *names)}


@dataclass(frozen=True, slots=True)
class _Look:
    """One look at a stage: its index, the stream's requests so far, when it began, now."""

    stage: int
    requests: int
    started: datetime
    now: datetime


def _judge_singles(
    judged: Judged,
    data: FlagAggregates,
    arms: tuple[_Arm, _Arm],
    outcomes: dict[str, Outcome],
    look: _Look,
) -> None:
    """Each single plan's gate at this look (its always-valid test, and its final look at
    the stage's planned end); its guardrail's regression ends that plan. The same test as
    if requests were independent is the always-valid one alone, for comparison."""
    plain = None
    at = (look.stage, look.requests)
    for metric, single in judged.singles.items():
        if metric not in outcomes:
            verdict = evaluate(_rollout(single, look.stage, look.started), data, look.now)
            if verdict.kind is VerdictKind.ROLLBACK and verdict.evidence.breach == metric:
                outcomes[metric] = Outcome(metric, at[0], float(at[1]))
        name = f"{metric}@requests"
        if judged.independent and name not in outcomes:
            if plain is None:
                plain = replace(
                    data,
                    treatment=arms[0].aggregate(on_units=False),
                    control=arms[1].aggregate(on_units=False),
                )
            result = guardrail_result(single.guardrails[0], plain, single)
            if result is not None and result.regressed:
                outcomes[name] = Outcome(metric, at[0], float(at[1]))
