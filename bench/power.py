"""The power preview against the real gate: is the predicted effect caught four times in five?

For ``--plans`` plans (20) drawn across stage percents (1-50%), stage lengths (10 min to
2 h), traffic (20,000 to 100,000 requests a half hour), base error rates (0.5-5%), the
gate's level per test and three shapes of traffic, the preview
(:mod:`controller.core.stats.power`) predicts the smallest error-rate regression the stage
detects with 80% power by its end. Each plan's stage is then simulated ``--runs`` times
(:mod:`tests.support.clustered`: units drawn by the shape, each assigned to an arm, their
requests spread over the stage, the real gate's test at every look) with treatment at the
predicted effect, and as many times at half of it. Goal: the predicted effect caught in
70-90% of runs, half of it in fewer than 50%.

The shapes: one request per unit (design effect 1); heavy units that fail alike (80% of
units send 1-3 requests, 19% 10-50, 1% 300-2,000; every request fails alike: design effect 1,
far fewer units than requests); and heavy units where 2% of units fail half their requests
(no units of 300 or more: a design effect of 2.9 to 9.8 by the base rate, given to the
preview as ``--design-effect`` would be, from the shape's own arithmetic, see
:func:`design_effect`). The preview is also told the shape's unlike units, as
``--heavy-units`` and ``--failing-units`` would tell it (:func:`heavy_units`): it averages a
small arm's power over how many of them land in it. A plan the preview says detects nothing
(a 2% stage of 10 minutes tested only when a heavy unit lands in it) is drawn again.

Rates come with their 95% Wilson bounds; progress goes to stderr, one line a plan. The
last line printed is one JSON object. docs/benchmarks.md has the figures measured. 8,000
stages (``--runs 200``) take about an hour on one busy core.

    python bench/power.py [--plans 20] [--runs 200] [--seed 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.core.rollouts import Guardrail, Plan, Stage
from controller.core.stats.power import detectable
from controller.core.stats.regressing import Traffic
from tests.support.clustered import SHAPES, Judged, Shape, simulate_clustered

PERCENTS = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0)
MINUTES = (10, 20, 30, 60, 120)
PER_HALF_HOUR = (20_000, 50_000, 100_000)
"""Requests a half hour to the flag, both arms."""
ERROR_RATES = (0.005, 0.01, 0.02, 0.05)
ALPHAS = (0.05, 0.0125, 0.00625)
"""The plan's alpha for its one guardrail and one stage: the level per test of a plan of one,
four, or two guardrails times four stages."""
SHAPE_NAMES = ("independent", "heavy_uniform", "no_heavy_failing")
MIN_UNITS = 1000
"""The simulator draws at least this many units a stage."""


@dataclass(frozen=True)
class Drawn:
    """One plan of the bench: its stage, its traffic, and what the preview predicts."""

    plan: Plan
    shape: Shape
    traffic: Traffic
    effect: float


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def requests_per_unit(shape: Shape) -> tuple[float, float]:
    """E[m] and E[m²] of the requests a unit of ``shape`` sends (uniform in each tier)."""
    mean = square = 0.0
    total = sum(t.share for t in shape.tiers)
    for tier in shape.tiers:
        width = tier.high - tier.low + 1
        mid = (tier.low + tier.high) / 2
        mean += tier.share / total * mid
        square += tier.share / total * ((width * width - 1) / 12 + mid * mid)
    return mean, square


def heavy_units(shape: Shape) -> tuple[float, float]:
    """The share of the shape's units in tiers sending ten times its mean or more, and what
    each of them sends on average (0, 0 where there is none)."""
    mean, _ = requests_per_unit(shape)
    total = sum(t.share for t in shape.tiers)
    heavy = [t for t in shape.tiers if (t.low + t.high) / 2 >= 10 * mean]
    share = sum(t.share for t in heavy) / total
    if share == 0:
        return 0.0, 0.0
    return share, sum(t.share * (t.low + t.high) / 2 for t in heavy) / total / share


def error_rate(shape: Shape, factor: float = 1.0) -> float:
    """The shape's error rate per request with every unit's propensity times ``factor``."""
    failing = min(1.0, shape.failing_rate * factor)
    ordinary = min(1.0, shape.error_rate * factor)
    return shape.failing_share * failing + (1 - shape.failing_share) * ordinary


def design_effect(shape: Shape) -> float:
    """The error rate's design effect, (E[π(1 - π)] + (E[m²]/E[m]) Var(π)) / (R(1 - R)), with
    π a unit's propensity (independent of its requests m) and R its mean.

    The variance per unit of Y - R·m is E[m π(1 - π)] + E[m²] Var(π); as if requests were
    independent it is E[m] R(1 - R).
    """
    mean, square = requests_per_unit(shape)
    rates = np.array([shape.failing_rate, shape.error_rate])
    shares = np.array([shape.failing_share, 1 - shape.failing_share])
    r = float((shares * rates).sum())
    var = float((shares * (rates - r) ** 2).sum())
    within = float((shares * rates * (1 - rates)).sum())
    return (within + square / mean * var) / (r * (1 - r))


def factor_for(shape: Shape, relative: float) -> float:
    """The treatment factor that raises the shape's error rate by ``relative`` of itself."""
    target = error_rate(shape) * (1 + relative)
    low, high = 1.0, 1.0 / min(shape.error_rate, shape.failing_rate or 1.0)
    if error_rate(shape, high) < target:
        return math.inf
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if error_rate(shape, middle) < target else (low, middle)
    return high


def draw(rng: np.random.Generator) -> Drawn | None:
    """One plan and its shape; None when the preview says the stage detects nothing."""
    base = SHAPES[str(rng.choice(SHAPE_NAMES))]
    rate = float(rng.choice(ERROR_RATES))
    per_half_hour = float(rng.choice(PER_HALF_HOUR))
    mean, _ = requests_per_unit(base)
    shape = replace(base, error_rate=rate, units=max(MIN_UNITS, round(per_half_hour / mean)))
    minutes = int(rng.choice(MINUTES))
    stage = Stage(percent=float(rng.choice(PERCENTS)), min_duration=timedelta(minutes=minutes),
                  min_units_per_arm=0)  # fmt: skip
    plan = Plan(stages=[stage], guardrails=[Guardrail(metric="error_rate")],
                alpha=float(rng.choice(ALPHAS)))  # fmt: skip
    seconds = minutes * 60.0
    units = max(MIN_UNITS, round(shape.units * seconds / 1800))  # as the simulator draws
    heavy_share, heavy_requests = heavy_units(shape)
    traffic = Traffic(
        heavy_share=heavy_share,
        heavy_requests=heavy_requests,
        failing_share=shape.failing_share,
        failing_rate=shape.failing_rate if shape.failing_share else 0.0,
        requests_per_s=units * mean / seconds,
        requests_per_unit=mean,
        design_effect=design_effect(shape),
        error_rate=error_rate(shape),
    )
    found = detectable(plan.guardrails[0], stage.percent, seconds, traffic, plan)
    if found.effect is None or not math.isfinite(factor_for(shape, found.effect)):
        return None
    return Drawn(plan, shape, traffic, found.effect)


def draw_plans(count: int, seed: int) -> list[Drawn]:
    rng = np.random.default_rng(seed)
    plans: list[Drawn] = []
    while len(plans) < count:
        drawn = draw(rng)
        if drawn is not None:
            plans.append(drawn)
    return plans


def one_run(task: tuple[Drawn, float, int]) -> bool:
    """Whether the gate's test caught the stage's regression of ``share`` times the figure."""
    drawn, share, seed = task
    judged = Judged(drawn.plan, {"error_rate": drawn.plan})
    factor = factor_for(drawn.shape, drawn.effect * share)
    outcomes = simulate_clustered(judged, drawn.shape, seed=seed, treatment_factor=factor)
    return outcomes["error_rate"].stopped is not None


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n), (centre + spread) / (1 + z * z / n)


def main(args: argparse.Namespace) -> dict[str, Any]:
    plans = draw_plans(args.plans, args.seed)
    tasks = [
        (drawn, share, args.seed * 1_000_003 + p * 10_007 + k * 2 + (share < 1))
        for p, drawn in enumerate(plans)
        for share in (1.0, 0.5)
        for k in range(args.runs)
    ]
    started = time.perf_counter()
    caught: list[bool] = []
    with ProcessPoolExecutor(args.workers) as pool:
        for hit in pool.map(one_run, tasks, chunksize=max(1, args.runs // 4)):
            caught.append(hit)
            if len(caught) % (2 * args.runs) == 0:
                done = len(caught) // (2 * args.runs)
                progress(f"{done} of {len(plans)} plans, {time.perf_counter() - started:.0f} s")
    rows = []
    for p, drawn in enumerate(plans):
        at = p * 2 * args.runs
        full, half = (
            sum(caught[at : at + args.runs]),
            sum(caught[at + args.runs : at + 2 * args.runs]),
        )
        rows.append(_row(drawn, full, half, args.runs))
    all_full = sum(r["caught"] for r in rows) / len(rows)
    all_half = sum(r["caught_half"] for r in rows) / len(rows)
    result = {
        "plans": len(rows),
        "runs": args.runs,
        "caught_at_predicted": round(all_full, 4),
        "caught_at_half": round(all_half, 4),
        "plans_within_70_90": sum(0.7 <= r["caught"] <= 0.9 for r in rows),
        "plans_half_below_50": sum(r["caught_half"] < 0.5 for r in rows),
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    _table(rows)
    return result


def _row(drawn: Drawn, full: int, half: int, runs: int) -> dict[str, Any]:
    stage = drawn.plan.stages[0]
    low, high = wilson(full, runs)
    return {
        "shape": drawn.shape.name,
        "percent": stage.percent,
        "minutes": stage.min_duration.total_seconds() / 60,
        "requests_per_s": round(drawn.traffic.requests_per_s, 2),
        "requests_per_unit": round(drawn.traffic.requests_per_unit, 2),
        "design_effect": round(drawn.traffic.design_effect, 2),
        "heavy_share": drawn.traffic.heavy_share,
        "failing_share": drawn.traffic.failing_share,
        "error_rate": drawn.traffic.error_rate,
        "alpha": drawn.plan.alpha_per_test,
        "predicted": round(drawn.effect, 4),
        "caught": full / runs,
        "caught_low95": round(low, 4),
        "caught_high95": round(high, 4),
        "caught_half": half / runs,
    }


def _table(rows: list[dict[str, Any]]) -> None:
    head = f"{'shape':<17}{'pct':>5}{'min':>5}{'req/s':>8}{'m':>6}{'deff':>6}{'base':>7}"
    print(head + f"{'alpha':>9}{'predicted':>11}{'caught':>8}{'95% CI':>14}{'at half':>9}")
    for r in rows:
        print(
            f"{r['shape']:<17}{r['percent']:>5g}{r['minutes']:>5g}{r['requests_per_s']:>8.1f}"
            f"{r['requests_per_unit']:>6.1f}{r['design_effect']:>6.2f}{r['error_rate']:>7.2%}"
            f"{r['alpha']:>9.4g}{'+' + format(r['predicted'], '.0%'):>11}{r['caught']:>8.0%}"
            f"{r['caught_low95']:>7.0%}-{r['caught_high95']:<6.0%}{r['caught_half']:>9.0%}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plans", type=int, default=20, help="plans drawn")
    parser.add_argument("--runs", type=int, default=200, help="runs per plan and effect")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parsed = parser.parse_args()
    print(json.dumps(main(parsed)))
