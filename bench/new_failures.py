"""The new_failures guardrail through the real gate: how much sooner than the error rate, and
its false rollbacks on the traffic real services send.

Seeded rollouts of :data:`DEFAULT_PLAN`'s four compared stages (1% for 30 min, 5% for 1 h,
25% for 2 h, 50% for 4 h) with a plan holding ``new_failures`` beside the default plan's
guardrails (``error_rate``, ``latency_p99``, ``new_failures``: alpha 0.05 over 3 guardrails
and 4 stages, 0.05/12 each, half of it at each stage's final look). Units are drawn as
:mod:`tests.support.clustered` draws them (each unit in one arm for the stage, its requests
spread over the stage, each request also an exposure), and the gate (:func:`evaluate`) looks
each time a stage's requests grow by ``--growth`` (5%). Every failed request is also an
exception named by a fingerprint: each unit fails with a fingerprint of its own (drawn from
the fingerprints' frequencies) for 90% of its failures and with one drawn afresh for the
rest, so a broken account's, a bot's or a heavy unit's failures cluster by unit as a bug's
do. The failures are counted as the store counts them: each in its arm's exceptions by unit
bucket, and under its fingerprint only while the flag keeps that fingerprint, chosen by the
flush's space-saving counts over both arms (``failures.lua``, ported here as
:class:`Registry`: at most 16 kept at once, 64 candidates, 64 ever, one partition), a flush a
simulated second. Each guardrail is also judged alone by the gate, at the plan's level for it
and with its final look (a one-guardrail plan of alpha 0.05/3), on the same stream, through
every stage whatever the plan did: the time it first rolls back.

* **Speed** (``--part speed``): a new exception on 0.5% of treatment's requests, over a 2%
  base of failed requests in both arms named by 4 background fingerprints (40/30/20/10%);
  the error rate sees the 2.5% against 2%. One request per unit at ``--rate`` requests a
  second (200, as ``bench/aa.py``), or a clustered shape (``--speed-shapes``). Per run, the
  simulated seconds into the rollout at which each guardrail first rolls back; a guardrail
  that never does is taken at the plan's end (27,000 s, censored: a ratio with it is a
  lower bound). Printed: the share of runs each detects, their median times, and the median
  of the paired ratios (error_rate's time over new_failures'). Claim: at least 3.
* **A/A** (``--part aa``): identical arms, 50 fingerprints of Zipf frequencies (s = 1.1)
  naming every failure, on ``bench/aa.py --traffic clustered``'s shapes (heavy units,
  broken accounts, bots, one unit sending a third to half of the requests) and
  ``failing_bots`` (bots' shape, each bot failing 5% of its 5,000 requests). The share of
  runs ``new_failures`` rolls back (alone, through every stage), with its 95% Wilson and
  Clopper-Pearson upper bounds (``--aa-plan``: the plan's rollbacks by guardrail too, at
  twice the time). Claim: at most 0.05; the guardrail spends 0.05/3 of it. Each rollback's
  stage, window (always-valid or final look), the gate's fingerprints with their counts,
  the first-named one's units and buckets, the arms' exposures, treatment's heaviest
  unit's share and the run's seed are printed.

* **The power preview** (``--part preview``): each compared stage alone, fresh, on the speed
  stream at ``--rate`` (one request per unit), its new failure at the stage's figure for a
  new failure as ``plan validate --traffic`` previews it (``--preview-figures preview``),
  were the stage's final look to read the failure's own test (``own_look``), or by power.py's
  normal approximation of that (``normal``); judged by new_failures alone. Printed per
  stage: the share of runs it rolls back within the stage (claim: 70-90%) with its 95%
  Wilson bounds, by the always-valid boundary or the final look; at the stage's end, the
  share the failure's own test at the final look's level would catch, and in how many runs
  the guardrail's final look read that test.

Speed runs cost about 5 CPU seconds each, A/A runs about 4 (all four stages), a preview run
1 to 6 (its one stage). The last line printed is one JSON object; docs/benchmarks.md has the
figures measured.

    python bench/new_failures.py [--part speed,aa,preview] [--runs 40] [--workers 2]
        [--seed 1] [--rate 200] [--speed-shapes independent]
        [--shapes heavy_failing,bots,...] [--aa-plan]
        [--preview-stages 0,1,2,3] [--preview-figures preview,own_look,normal]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.adapters.redis.cells.failure_counts import (
    FAILURE_CANDIDATES,
    FAILURES_EVER,
    FAILURES_KEPT,
)
from controller.core.machine.gate import evaluate
from controller.core.rollouts.plan import DEFAULT_PLAN, Plan
from controller.core.rollouts.plan_parts import Guardrail
from controller.core.rollouts.rollout import VerdictKind
from controller.core.stats import (
    FAILURE_TESTS,
    ArmAggregate,
    FailureCounts,
    FlagAggregates,
    failure_tests,
    fixed_horizon_test,
    plan_preview,
)
from controller.core.stats.failures.preview import last_look_width, smallest_new_failure
from controller.core.stats.failures.testing import deciding
from controller.core.stats.heaviest.counts import Heaviest
from controller.core.stats.power import POWER, Z_POWER
from controller.core.stats.regressing import Traffic as Expected
from controller.core.stats.units import EXCEPTIONS, UNIT_BUCKETS
from controller.core.wire import GateEvidence
from tests.support.clustered import (
    ONE,
    SHAPES,
    Shape,
    _Arm,
    _population,
    _Requests,
    look_counts,
)
from tests.support.simulation import T0, _rollout

NEW_FAILURES: Final = "new_failures"
PLAN = DEFAULT_PLAN.model_copy(
    update={
        "name": "default+new_failures",
        "guardrails": [
            *(g for g in DEFAULT_PLAN.guardrails if g.metric != NEW_FAILURES),
            Guardrail(metric=NEW_FAILURES),
        ],
    }
)
"""The default plan with ``new_failures`` beside its error rate and p99."""
JUDGED = ("error_rate", NEW_FAILURES)
"""The guardrails judged alone, each at the plan's level for it."""
BACKGROUND = (0.4, 0.3, 0.2, 0.1)
"""The speed stream's background fingerprints: their shares of the base failures."""
ZIPF_COUNT, ZIPF_S = 50, 1.1
OWN = 0.9
"""A unit's failures under a fingerprint of its own; the rest drawn afresh."""
NEW_RATE = 0.005
"""The speed stream's new exception: this share of treatment's requests."""
BASE_RATE = 0.02
FAILING_BOTS = 0.05
"""``failing_bots``: each bot fails this share of its requests."""


def alone(plan: Plan, key: str) -> Plan:
    """``plan``'s guardrail ``key`` as the only guardrail of a plan that tests it at the same
    level (its share of the plan's alpha, by the plan's weights)."""
    guardrail = next(g for g in plan.guardrails if g.key == key)
    single = plan.model_copy(update={"name": key, "guardrails": [guardrail], "alpha_weights": None})
    share = plan.alpha_for(key) / single.alpha_for(key)
    single = single.model_copy(update={"alpha": plan.alpha * share})
    assert math.isclose(single.alpha_for(key), plan.alpha_for(key))
    return single


def zipf(count: int, s: float) -> tuple[float, ...]:
    """Zipf frequencies of ``count`` fingerprints: the k-th in proportion to 1 / k^s."""
    weights = [1.0 / (k**s) for k in range(1, count + 1)]
    total = math.fsum(weights)
    return tuple(w / total for w in weights)


# --- the store's choice of fingerprints (failures.lua), ported ----------------------------


@dataclass
class Registry:
    """Which fingerprints a flag counts under their own name on one partition, as
    ``failures.lua`` chooses them: space-saving counts over both arms (Metwally et al. 2005),
    at most :data:`FAILURES_KEPT` kept at once, :data:`FAILURE_CANDIDATES` counted while
    not kept, :data:`FAILURES_EVER` ever kept."""

    kept: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    ever: int = 0

    def write(self, entries: Sequence[tuple[str, int]]) -> list[bool]:
        """One cell's failures, ``(fingerprint, count)`` first seen first: whether each is
        counted under its fingerprint (kept when it comes, or kept with room on arriving)."""
        out = []
        for fp, total in entries:
            n = self._counted(fp, total)
            if len(self.kept) < FAILURES_KEPT:
                self._keep(fp, n)
            out.append(fp in self.kept)
            self._keep(fp, n)  # once full: one counted more than the least kept replaces it
        return out

    def _least(self, kept: bool) -> tuple[str | None, int]:
        found, count = None, 0
        for fp, n in self.counts.items():
            if (fp in self.kept) == kept and (
                found is None or n < count or (n == count and fp < found)
            ):
                found, count = fp, n
        return found, count

    def _counted(self, fp: str, total: int) -> int:
        n = self.counts.get(fp)
        if n is None and fp not in self.kept:
            n = 0
            if self.candidates >= FAILURE_CANDIDATES:
                gone, gone_n = self._least(False)
                if gone is not None:
                    del self.counts[gone]
                    n = gone_n
                    self.candidates -= 1
            self.candidates += 1
        n = (n or 0) + total
        self.counts[fp] = n
        return n

    def _keep(self, fp: str, n: int) -> None:
        if fp in self.kept or self.ever >= FAILURES_EVER:
            return
        if len(self.kept) >= FAILURES_KEPT:
            low, low_n = self._least(True)
            if low is None or n <= low_n:
                return
            self.kept.discard(low)
            self.candidates += 1
        self.kept.add(fp)
        self.candidates -= 1
        self.ever += 1


# --- traffic ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """A stream: its units' shape, its fingerprints' frequencies and what treatment adds."""

    shape: Shape
    weights: tuple[float, ...]
    new_rate: float = 0.0
    """Treatment's requests failing with a new fingerprint (on top of the base)."""
    bot_error_rate: float | None = None
    """Where given, each bot (a unit sending the shape's ``bot_requests``) fails this share."""


def names(count: int) -> list[str]:
    """The fingerprints' names, the most frequent first; the new one last."""
    return [*(f"Fault{chr(65 + k // 26)}{chr(65 + k % 26)}Error in app.py:f" for k in range(count)),
            "NewError in feature.py:g"]  # fmt: skip


def name_failures(rng: np.random.Generator, r: _Requests, traffic: Traffic) -> np.ndarray:
    """Each request's fingerprint (its index in :func:`names`, -1 where it did not fail),
    after the stream's own failures are added to ``r.error``: failing bots' and treatment's
    new exception (a request failing with it is one that did not fail otherwise)."""
    shape, count = traffic.shape, len(traffic.weights)
    units = r.buckets.size
    if traffic.bot_error_rate is not None:
        sent = np.bincount(r.unit, minlength=units)
        bots = sent == shape.bot_requests
        if shape.dominant[1] > 0:
            bots[0] = False
        on_bots = bots[r.unit]
        r.error = np.where(on_bots, rng.random(r.unit.size) < traffic.bot_error_rate, r.error)
    p = np.asarray(traffic.weights)
    own = rng.choice(count, size=units, p=p)
    fresh = rng.choice(count, size=r.unit.size, p=p)
    mine = rng.random(r.unit.size) < OWN
    fp = np.where(mine, own[r.unit], fresh)
    if traffic.new_rate > 0:
        chance = traffic.new_rate / (1.0 - BASE_RATE)
        new = (r.arm == 0) & ~r.error & (rng.random(r.unit.size) < chance)
        r.error = r.error | new
        fp = np.where(new, count, fp)
    return np.where(r.error, fp, -1)


@dataclass
class FailingArm(_Arm):
    """An arm as the store holds it, its exceptions and its kept fingerprints' counts too."""

    failed: dict[int, list[int]] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    listed: bool = True
    """Whether the store's list of the arm's heaviest units is kept. The preview part's
    stream sends one request a unit: no unit is heavy there, and the list (a partition of
    every unit at every look, half of a run's time) changes no verdict of new_failures."""

    def heaviest(self) -> Heaviest:
        return super().heaviest() if self.listed else Heaviest()

    def add(self, r: _Requests, rows: np.ndarray) -> None:
        super().add(r, rows)
        if rows.size:  # every failed request is an exception too
            self.slots += np.bincount(
                r.base[rows] + EXCEPTIONS, weights=r.error[rows], minlength=self.slots.size
            )

    def count(self, fp: int, buckets: list[int]) -> None:
        column = self.failed.get(fp)
        if column is None:
            column = self.failed[fp] = [0] * UNIT_BUCKETS
        for bucket in buckets:
            column[bucket] += 1

    def with_failed(self) -> ArmAggregate:
        aggregate = self.aggregate()
        failed = {
            self.labels[fp]: FailureCounts(self.labels[fp], "", tuple(column))
            for fp, column in self.failed.items()
        }
        return replace(aggregate, failed=failed)


def flush(
    registry: Registry,
    arms: tuple[FailingArm, FailingArm],
    r: _Requests,
    fp: np.ndarray,
    rows: np.ndarray,
    second: np.ndarray,
) -> None:
    """The failures among ``rows`` counted as the flush counts them, a flush each simulated
    second: per cell (the arm that failed first in the second first), each fingerprint's
    failures (first seen first) under its name where the registry keeps it."""
    failed = rows[fp[rows] >= 0]
    if failed.size == 0:
        return
    whens, arms_of = second[failed].tolist(), r.arm[failed].tolist()
    fps, buckets = fp[failed].tolist(), r.buckets[r.unit[failed]].tolist()
    batch: dict[int, dict[int, list[int]]] = {}
    now = whens[0]
    for when, arm, which, bucket in zip(whens, arms_of, fps, buckets, strict=True):
        if when != now:
            _flushed(registry, arms, batch)
            batch, now = {}, when
        batch.setdefault(arm, {}).setdefault(which, []).append(bucket)
    _flushed(registry, arms, batch)


def _flushed(
    registry: Registry, arms: tuple[FailingArm, FailingArm], batch: dict[int, dict[int, list[int]]]
) -> None:
    """One flush's cells (arm: fingerprint: each failure's unit bucket) through the registry."""
    for arm, failures in batch.items():
        labels = arms[arm].labels
        entries = [(labels[which], len(buckets)) for which, buckets in failures.items()]
        for (which, buckets), kept in zip(failures.items(), registry.write(entries), strict=True):
            if kept:
                arms[arm].count(which, buckets)


# --- one run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Stop:
    """Where a judge first rolled back (None: never)."""

    stopped: str | None
    stage: int
    seconds: float
    requests: int
    window: str | None = None
    """``always_valid`` or ``final_look``."""
    seen: tuple[tuple[str, int, int, float | None], ...] = ()
    """The gate's failures by fingerprint at that look: name, treatment, control, p."""
    units: tuple[int, int] = (0, 0)
    """The gate's first-named fingerprint's failing units in treatment, and the most one of
    them sent."""
    look: tuple[float, float, float, float] | None = None
    """At a final look: the guardrail's test there (delta, z, p, alpha)."""
    exposures: tuple[int, int] = (0, 0)
    """Treatment's and control's exposures in the stage."""
    heaviest: float = 0.0
    """The share of treatment's exposures its heaviest unit sent."""
    top_bucket: tuple[int, int] = (0, 0)
    """The first-named fingerprint's count in treatment as the store holds it: in its
    fullest unit bucket, in all."""
    seed: int = 0


@dataclass
class StageStream:
    """One stage's requests as drawn, and their fingerprints (-1: not failed)."""

    r: _Requests
    fp: np.ndarray
    duration: float
    units: int

    @property
    def total(self) -> int:
        return int(self.r.arm.size)


def stage_stream(
    rng: np.random.Generator, traffic: Traffic, percent: float, duration: float
) -> StageStream:
    """A stage's units and requests on ``traffic``, and each request's fingerprint."""
    units = max(1000, round(traffic.shape.units * duration / 1800))
    r = _population(rng, traffic.shape, units, percent, 1.0)
    fp = name_failures(rng, r, traffic)
    return StageStream(r, fp, duration, units)


def stage_looks(
    stream: StageStream,
    index: int,
    registry: Registry,
    labels: list[str],
    growth: float,
    *,
    listed: bool = True,
) -> Iterator[tuple[int, FlagAggregates]]:
    """Each look of the stage: the requests arrived, and the arms as the store holds them
    (``listed``: with their lists of heaviest units)."""
    r, fp, total = stream.r, stream.fp, stream.total
    second = (np.arange(total) * (stream.duration / total)).astype(np.int64)
    arms = tuple(
        FailingArm(stream.units, np.zeros(stream.units, bool), labels=labels, listed=listed)
        for _ in range(2)
    )
    pair = (arms[0], arms[1])
    last = 0
    for count in look_counts(total, growth=growth):
        rows = np.arange(last, count)
        flush(registry, pair, r, fp, rows, second)
        for a, arm in enumerate(pair):
            arm.add(r, rows[r.arm[rows] == a])
        last = count
        yield (
            count,
            FlagAggregates(
                "sim", frozenset({index + 1}), pair[0].with_failed(), pair[1].with_failed()
            ),
        )


def simulate(
    traffic: Traffic, *, seed: int, growth: float, judged: Sequence[str] = ("plan", *JUDGED)
) -> dict[str, Stop]:
    """The plan's stages on ``traffic``: where the plan (``plan``) and each guardrail of
    ``judged`` alone first stopped."""
    rng = np.random.default_rng(seed)
    judges = {key: PLAN if key == "plan" else alone(PLAN, key) for key in judged}
    labels = names(len(traffic.weights))
    registry = Registry()
    out: dict[str, Stop] = {}
    elapsed_s, elapsed_n = 0.0, 0
    for index, stage in enumerate(PLAN.stages):
        if stage.percent >= 100:
            break
        stream = stage_stream(rng, traffic, stage.percent, stage.min_duration.total_seconds())
        r, fp, total, duration = stream.r, stream.fp, stream.total, stream.duration
        started = T0 + timedelta(seconds=elapsed_s)
        for count, data in stage_looks(stream, index, registry, labels, growth):
            now = started + timedelta(seconds=duration * count / total)
            at = (index, elapsed_s + duration * count / total, elapsed_n + count)
            for name, plan in judges.items():
                if name in out:
                    continue
                verdict = evaluate(_rollout(plan, index, started), data, now)
                breach = verdict.evidence.breach
                so_far = np.arange(count)
                if name == "plan" and verdict.kind in (VerdictKind.ROLLBACK, VerdictKind.PAUSE):
                    stopped = breach or "srm"
                    out[name] = _stop(
                        stopped, at, verdict.evidence, (r, fp, labels), so_far, data, seed
                    )
                elif verdict.kind is VerdictKind.ROLLBACK and breach == name:
                    out[name] = _stop(
                        name, at, verdict.evidence, (r, fp, labels), so_far, data, seed
                    )
            if len(out) == len(judges):
                return out
        elapsed_s += duration
        elapsed_n += total
    done = Stop(None, len(PLAN.stages) - 2, elapsed_s, elapsed_n)
    return {name: out.get(name, done) for name in judges}


def _stop(
    stopped: str,
    at: tuple[int, float, int],
    evidence: GateEvidence,
    stream: tuple[_Requests, np.ndarray, list[str]],
    rows: np.ndarray,
    data: FlagAggregates,
    seed: int,
) -> Stop:
    """Where and on what a judge stopped: the gate's fingerprints, the first-named one's
    failing units and buckets, the arms' exposures and treatment's heaviest unit."""
    seen = tuple(
        (f.name, f.treatment, f.control, None if f.p_value is None else round(f.p_value, 6))
        for f in (evidence.failures or [])[:3]
    )
    r, fp, labels = stream
    mine = rows[r.arm[rows] == 0]
    per_unit = np.bincount(r.unit[mine])
    heaviest = float(per_unit.max() / mine.size) if mine.size else 0.0
    units, top = (0, 0), (0, 0)
    if stopped == NEW_FAILURES and seen and seen[0][0] in labels:
        name = seen[0][0]
        counted = data.treatment.failed.get(name)
        if counted is not None:
            top = (max(counted.buckets), counted.total)
        failing = mine[fp[mine] == labels.index(name)]
        if failing.size:
            counts = np.unique(r.unit[failing], return_counts=True)[1]
            units = (int(counts.size), int(counts.max()))
    window = evidence.decided_by or "always_valid"
    look = None
    if window == "final_look" and evidence.final_look and evidence.final_look.tests:
        test = evidence.final_look.tests.get(stopped)
        if test is not None:
            look = (test.delta, round(test.z, 3), test.p_value, test.alpha)
    exposures = (data.treatment.exposures, data.control.exposures)
    return Stop(stopped, at[0], round(at[1], 1), at[2], window, seen, units, look,
                exposures, round(heaviest, 4), top, seed)  # fmt: skip


# --- the two parts ---------------------------------------------------------------------


def speed_traffic(shape: str, rate: float) -> Traffic:
    """The speed stream on ``shape``: ``independent`` is one request per unit at ``rate``
    requests a second and a 2% base; another shape keeps its own base (heavy_failing's is
    2% of requests: 1% of ordinary units' and half of 2% of units')."""
    if shape == "independent":
        base = Shape("independent", ONE, error_rate=BASE_RATE, conversion_sigma=0.0,
                     value_unit_sigma=0.0, units=round(rate * 1800))  # fmt: skip
    else:
        base = SHAPES[shape]
    return Traffic(base, BACKGROUND, new_rate=NEW_RATE)


def aa_traffic(shape: str) -> Traffic:
    """The A/A stream on ``shape`` (``failing_bots``: bots' shape, its bots failing)."""
    weights = zipf(ZIPF_COUNT, ZIPF_S)
    if shape == "failing_bots":
        return Traffic(replace(SHAPES["bots"], name=shape), weights, bot_error_rate=FAILING_BOTS)
    return Traffic(SHAPES[shape], weights)


AA_SHAPES = (*SHAPES, "failing_bots")

Task = tuple[str, str, int, float, float, tuple[str, ...]]
"""(part, shape, seed, rate, growth, judged)."""


def one_run(task: Task) -> dict[str, Stop]:
    part, shape, seed, rate, growth, judged = task
    traffic = speed_traffic(shape, rate) if part == "speed" else aa_traffic(shape)
    return simulate(traffic, seed=2 * seed + (part == "aa"), growth=growth, judged=judged)


def wilson(hits: int, n: int, *, upper: bool, z: float = 1.96) -> float:
    """The 95% Wilson score bound of a rate of ``hits`` in ``n``."""
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre + spread if upper else centre - spread) / (1 + z * z / n)


def clopper_pearson_upper(hits: int, n: int, level: float = 0.95) -> float:
    """The exact (Clopper-Pearson) two-sided ``level`` upper bound of a rate of ``hits`` in
    ``n``: the p at which seeing ``hits`` or fewer has chance (1 - level) / 2."""
    if hits >= n:
        return 1.0
    tail = (1.0 - level) / 2.0

    def at_most(p: float) -> float:
        return math.fsum(math.comb(n, k) * p**k * (1.0 - p) ** (n - k) for k in range(hits + 1))

    low, high = hits / n, 1.0
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if at_most(mid) > tail else (low, mid)
    return high


def paired_ratios(runs: Sequence[dict[str, Stop]], end: float) -> list[float]:
    """Per run, error_rate's time to rolling back over new_failures': a guardrail that never
    rolled back is taken at ``end`` (the plan's end: censored)."""

    def when(stop: Stop) -> float:
        return stop.seconds if stop.stopped is not None else end

    return [when(r["error_rate"]) / when(r[NEW_FAILURES]) for r in runs]


def summarise_speed(runs: list[dict[str, Stop]]) -> dict[str, Any]:
    n = len(runs)
    end = sum(s.min_duration.total_seconds() for s in PLAN.stages if s.percent < 100)
    out: dict[str, Any] = {"runs": n, "plan_end_s": end}
    for key in JUDGED:
        hits = [r[key] for r in runs if r[key].stopped is not None]
        out[key] = {
            "detected": len(hits) / n,
            "lower95": round(wilson(len(hits), n, upper=False), 4),
            "by_stage": [sum(s.stage == i for s in hits) for i in range(4)],
            "final_look": sum(s.window == "final_look" for s in hits),
            "median_s": statistics.median(s.seconds for s in hits) if hits else None,
            "median_requests": statistics.median(s.requests for s in hits) if hits else None,
        }
    caught = [r[NEW_FAILURES] for r in runs if r[NEW_FAILURES].stopped is not None]
    out[NEW_FAILURES]["named_the_new_one"] = sum(
        bool(s.seen) and s.seen[0][0] == names(len(BACKGROUND))[-1] for s in caught
    )
    ratios = paired_ratios(runs, end)
    quartiles = statistics.quantiles(ratios, n=4) if n > 1 else [ratios[0]] * 3
    out["ratio"] = {
        "median": round(statistics.median(ratios), 3),
        "quartiles": [round(q, 3) for q in quartiles],
        "at_least_3": sum(x >= 3 for x in ratios) / n,
        "censored_error_rate": sum(r["error_rate"].stopped is None for r in runs),
        "censored_new_failures": sum(r[NEW_FAILURES].stopped is None for r in runs),
        "median_in_requests": round(
            statistics.median(r["error_rate"].requests / r[NEW_FAILURES].requests for r in runs), 3
        ),
    }
    medians = [out[k]["median_s"] for k in JUDGED]
    if all(medians):
        out["ratio"]["of_medians"] = round(medians[0] / medians[1], 3)
    plan = [r["plan"].stopped for r in runs]
    out["plan_stopped_on"] = {str(k): plan.count(k) for k in sorted(set(plan), key=str)}
    return out


def summarise_aa(runs: list[dict[str, Stop]]) -> dict[str, Any]:
    n = len(runs)
    out: dict[str, Any] = {"runs": n}
    for key in runs[0]:
        stops = [r[key] for r in runs if r[key].stopped is not None]
        out[key] = {
            "rate": len(stops) / n,
            "upper95": round(wilson(len(stops), n, upper=True), 4),
            "upper95_exact": round(clopper_pearson_upper(len(stops), n), 4),
            "stages": sorted(s.stage for s in stops),
        }
        if key == "plan":
            out[key]["on"] = sorted(str(s.stopped) for s in stops)
        if key == NEW_FAILURES:
            out[key]["rollbacks"] = [
                {
                    "stage": s.stage,
                    "window": s.window,
                    "requests": s.requests,
                    "failures": [list(x) for x in s.seen],
                    "treatment_units": s.units[0],
                    "most_from_one_unit": s.units[1],
                    "final_look": s.look,
                    "exposures": list(s.exposures),
                    "heaviest_unit_share": s.heaviest,
                    "in_fullest_bucket_of_counted": list(s.top_bucket),
                    "seed": s.seed,
                }
                for s in stops
            ]
    return out


# --- the preview's figure through the gate, stage by stage ------------------------------

PREVIEW_BAND = (0.7, 0.9)
"""The share of runs a stage must catch its previewed figure in: about 80%."""

PreviewTask = tuple[int, int, float, float, float]
"""(stage index, seed, requests a second, growth, the new failure's rate)."""


def expected_traffic(rate: float) -> Expected:
    """The speed stream as ``plan validate --traffic`` is told it: ``rate`` requests a second,
    one request a unit, units alike (design effect 1), 2% of requests failing."""
    return Expected(requests_per_s=rate, requests_per_unit=1.0, error_rate=BASE_RATE)


def preview_figures(rate: float) -> dict[int, float | None]:
    """Each compared stage's figure for a new failure, as ``plan validate`` prints it."""
    found = {}
    for stage in plan_preview(PLAN, expected_traffic(rate)):
        figure = next(d for d in stage.guardrails if d.new)
        assert math.isclose(stage.seconds, PLAN.stages[stage.index].min_duration.total_seconds())
        found[stage.index] = figure.effect
    return found


FIGURE_KINDS = ("preview", "own_look", "normal")
"""The figures ``--preview-figures`` may run (:func:`figure_of`)."""


def figure_of(kind: str, index: int, rate: float) -> float:
    """Stage ``index``'s figure of ``kind``: ``preview``, as printed (the always-valid boundary
    alone: the final look reads another test); ``own_look``, the preview's were the final look
    to read the new failure's own test; ``normal``, power.py's normal approximation of that,
    at V̂ = V: Δ̂ normal around r with the count's variance at its mean λ = r·n_T, so
    √λ = c + z_0.8 (c the final look's z)."""
    stage = PLAN.stages[index]
    seconds = stage.min_duration.total_seconds()
    if kind == "preview":
        found = preview_figures(rate)[index]
    elif kind == "own_look":
        guardrail, traffic = PLAN.guardrails[-1], expected_traffic(rate)
        found, _ = smallest_new_failure(
            guardrail, stage.percent, seconds, traffic, PLAN, power=POWER, final_look=True
        )
    else:
        requests = rate * seconds
        width = last_look_width(PLAN.guardrails[-1], PLAN, round(requests), final_look=True)
        found = (width + Z_POWER) ** 2 / (requests * stage.percent / 100.0)
    assert found is not None
    return found


@dataclass(frozen=True)
class StageCaught:
    """One run of a stage alone with a new failure in treatment."""

    window: str | None
    """Where the gate rolled back within the stage: always_valid or final_look; None: not."""
    count: int
    """The new failure's count in treatment as the store holds it, then."""
    own_look: bool | None = None
    """At the stage's end (not reached: None), whether the new failure's own test regressed
    at the final look's level over the 17 tests."""
    read_new: bool | None = None
    """At the stage's end, whether the test the guardrail's final look reads (the least
    proven of the 17) was the new failure's."""


def preview_run(task: PreviewTask) -> StageCaught:
    """Stage ``index`` alone, judged by new_failures alone at the plan's level for it."""
    index, seed, rate, growth, new_rate = task
    stage = PLAN.stages[index]
    traffic = replace(speed_traffic("independent", rate), new_rate=new_rate)
    rng = np.random.default_rng(seed)
    judge = alone(PLAN, NEW_FAILURES)
    stream = stage_stream(rng, traffic, stage.percent, stage.min_duration.total_seconds())
    labels = names(len(traffic.weights))
    data = None
    for count, data in stage_looks(stream, index, Registry(), labels, growth, listed=False):
        now = T0 + timedelta(seconds=stream.duration * count / stream.total)
        verdict = evaluate(_rollout(judge, index, T0), data, now)
        window = verdict.evidence.decided_by or "always_valid"
        if verdict.kind is VerdictKind.ROLLBACK and verdict.evidence.breach == NEW_FAILURES:
            if window == "always_valid":
                return StageCaught(window, _new_count(data, labels[-1]))
            break
    else:
        window = None
    assert data is not None
    tests = failure_tests(judge.guardrails[0], data, judge, judge.sequential_alpha(NEW_FAILURES))
    mine = next((t for t in tests if t.key == labels[-1]), None)
    own = False
    if mine is not None and mine.result is not None:
        level = judge.final_alpha(NEW_FAILURES) / FAILURE_TESTS
        own = fixed_horizon_test(mine.result, level).regressed
    read = deciding(tests)
    return StageCaught(window, _new_count(data, labels[-1]), own, read is not None and read is mine)


def _new_count(data: FlagAggregates, new: str) -> int:
    counted = data.treatment.failed.get(new)
    return 0 if counted is None else counted.total


def summarise_preview(figure: float, runs: list[StageCaught]) -> dict[str, Any]:
    n = len(runs)
    caught = sum(r.window is not None for r in runs)
    reached = [r for r in runs if r.own_look is not None]
    own = sum(r.window == "always_valid" or bool(r.own_look) for r in runs)
    return {
        "figure": figure,
        "runs": n,
        "caught": caught,
        "share": round(caught / n, 4),
        "lower95": round(wilson(caught, n, upper=False), 4),
        "upper95": round(wilson(caught, n, upper=True), 4),
        "in_band": PREVIEW_BAND[0] <= caught / n <= PREVIEW_BAND[1],
        "always_valid": sum(r.window == "always_valid" for r in runs),
        "final_look": sum(r.window == "final_look" for r in runs),
        "with_own_final_look": round(own / n, 4),
        "final_look_read_new": sum(bool(r.read_new) for r in reached),
        "reached_end": len(reached),
        "median_count": statistics.median(r.count for r in runs),
    }


def preview_part(args: argparse.Namespace, started: float) -> dict[str, Any]:
    """Each compared stage alone at its figure of each kind of ``--preview-figures``
    (:func:`figure_of`): the share of runs the gate catches it in."""
    stages = [int(i) for i in args.preview_stages.split(",")]
    out: dict[str, Any] = {"requests_per_second": args.rate, "band": PREVIEW_BAND, "stages": {}}
    kinds = args.preview_figures.split(",")
    _known(kinds, FIGURE_KINDS, "figures")
    for kind in kinds:
        for index in stages:
            figure = figure_of(kind, index, args.rate)
            tasks: list[PreviewTask] = [
                (index, args.seed * 1_000_003 + i, args.rate, args.growth, figure)
                for i in range(args.runs)
            ]
            with ProcessPoolExecutor(max_workers=args.workers) as pool:
                runs = list(pool.map(preview_run, tasks, chunksize=2))
            found = summarise_preview(figure, runs)
            out["stages"][f"{index + 1}:{kind}"] = found
            progress(
                f"preview stage {index + 1} ({kind}): {figure:.3g} of treatment's requests,"
                f" caught {found['caught']}/{found['runs']} = {found['share']:.3f} (95%"
                f" {found['lower95']:.3f}-{found['upper95']:.3f}); always-valid"
                f" {found['always_valid']}, final look {found['final_look']}; with the new"
                f" failure's own final look {found['with_own_final_look']:.3f}; the look read it"
                f" in {found['final_look_read_new']}/{found['reached_end']};"
                f" {time.monotonic() - started:.0f} s"
            )
    return out


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run_part(
    part: str, shapes: list[str], args: argparse.Namespace, started: float
) -> dict[str, list[dict[str, Stop]]]:
    judged = ("plan", *JUDGED) if part == "speed" or args.aa_plan else (NEW_FAILURES,)
    tasks: list[Task] = [
        (part, s, args.seed * 1_000_003 + i, args.rate, args.growth, judged)
        for s in shapes
        for i in range(args.runs)
    ]
    results: dict[str, list[dict[str, Stop]]] = {s: [] for s in shapes}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        answers = pool.map(one_run, tasks, chunksize=2)
        for done, (task, run) in enumerate(zip(tasks, answers, strict=True), start=1):
            results[task[1]].append(run)
            if done % max(1, len(tasks) // 20) == 0:
                elapsed = time.monotonic() - started
                progress(f"{part}: {done}/{len(tasks)} runs, {elapsed:.0f} s")
    return results


def main(args: argparse.Namespace) -> dict[str, Any]:
    parts = args.part.split(",")
    started = time.monotonic()
    out: dict[str, Any] = {
        "alpha": PLAN.alpha,
        "alpha_per_test": PLAN.alpha_for(NEW_FAILURES),
        "final_look_share": PLAN.final_look_share,
        "growth": args.growth,
    }
    if "speed" in parts:
        shapes = args.speed_shapes.split(",")
        _known(shapes, ("independent", *SHAPES))
        runs = run_part("speed", shapes, args, started)
        out["speed"] = {
            "requests_per_second": args.rate,
            "shapes": {s: summarise_speed(r) for s, r in runs.items()},
        }
        for shape, f in out["speed"]["shapes"].items():
            ratio = f["ratio"]
            progress(
                f"speed {shape}: new_failures detects {f[NEW_FAILURES]['detected']:.3f}"
                f" (median {f[NEW_FAILURES]['median_s']} s), error_rate"
                f" {f['error_rate']['detected']:.3f} (median {f['error_rate']['median_s']} s);"
                f" median paired ratio {ratio['median']} (quartiles {ratio['quartiles']},"
                f" >= 3 in {ratio['at_least_3']:.3f}, error_rate censored"
                f" {ratio['censored_error_rate']})"
            )
    if "aa" in parts:
        shapes = args.shapes.split(",") if args.shapes else list(AA_SHAPES)
        _known(shapes, AA_SHAPES)
        runs = run_part("aa", shapes, args, started)
        out["aa"] = {
            "fingerprints": ZIPF_COUNT,
            "zipf_s": ZIPF_S,
            "shapes": {s: summarise_aa(r) for s, r in runs.items()},
        }
        for shape, f in out["aa"]["shapes"].items():
            nf = f[NEW_FAILURES]
            progress(
                f"A/A {shape}: new_failures {nf['rate']:.3f} (95% upper {nf['upper95']:.3f},"
                f" exact {nf['upper95_exact']:.3f})"
            )
            if "plan" in f:
                progress(f"A/A {shape}: the plan {f['plan']['rate']:.3f} on {f['plan']['on']}")
            for stop in nf["rollbacks"]:
                progress(f"  {shape} new_failures rollback: {stop}")
    if "preview" in parts:
        out["preview"] = preview_part(args, started)
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


def _known(shapes: list[str], known: Sequence[str], what: str = "shapes") -> None:
    unknown = [s for s in shapes if s not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; known: {', '.join(known)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", default="speed,aa", help="speed, aa, preview, or several")
    parser.add_argument("--runs", type=int, default=40, help="seeded runs per shape and part")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=200.0, help="speed: requests a second")
    parser.add_argument(
        "--speed-shapes", default="independent", help="speed: independent or clustered shapes"
    )
    parser.add_argument("--shapes", default="", help="A/A: shapes to run (default: all)")
    parser.add_argument(
        "--aa-plan",
        action="store_true",
        help="A/A: judge the plan too (its rollbacks by guardrail; twice the time)",
    )
    parser.add_argument(
        "--growth", type=float, default=0.05, help="look again once the sample grew this much"
    )
    parser.add_argument(
        "--preview-stages", default="0,1,2,3", help="preview: the compared stages, from 0"
    )
    parser.add_argument(
        "--preview-figures",
        default="preview",
        help="preview: the figures run: preview (as printed), own_look (were the final look to"
        " read the new failure's test), normal (power.py's formula for that)",
    )
    print(json.dumps(main(parser.parse_args())))
