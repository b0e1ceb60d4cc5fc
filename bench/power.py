"""The power preview against the real gate: is the predicted effect caught four times in five?

For each metric the preview prints (``--metrics``: error rate, p95, p99, the share above 50
ms, conversion rate, conversion value), ``--plans`` one-stage plans (6) are drawn across
stage percents (1-50%), stage lengths (10 min to 2 h), traffic (20,000 to 100,000 requests a
half hour), base error rates (0.5-5%), the gate's level per test and three shapes of
traffic, and one more is fixed: a clustered stage with a small arm (10 requests per unit, an
error rate's design effect of 2, a 25% stage of 20 minutes at 20,000 requests a half hour:
about 330 treated units). The preview (:mod:`controller.core.stats.power`) predicts the
smallest regression each stage detects with 80% power by its end. Each stage is then
simulated ``--runs`` times (:mod:`tests.support.clustered`: units drawn by the shape, each
assigned to an arm, their requests spread over the stage) with treatment at the predicted
effect, and as many times at half of it, judged by the real gate (:func:`evaluate`) as the
requests arrive: its always-valid test at its share of the level at every look, and its
final look, the fixed-horizon test at the rest, when the stage reaches its end. Goal: the
predicted effect caught in 70-90% of runs, half of it in fewer than 50%.

What the preview is told is each shape's own arithmetic, as ``--design-effect``,
``--heavy-units``, ``--failing-units`` and the latency and conversion options would tell
it: the metric's base, its design effect ((E[π(1 - π)] + (E[m²]/E[m]) Var(π)) / (R(1 - R))
of the unit's propensity π: to fail, to convert, to be faster than the quantile or slower
than the edge), and for latency the log-normal through the simulated latency (a log-normal
body with rare stalls, times each unit's speed) at the ranks the gate's interval reads in
the smaller arm (Woodruff's q ± 1.96·√(q(1 - q)·d/n)), or at the edge's share. A
regression is what the preview means by it: every treatment unit's error propensity
multiplied alike (failing units capped at 1), its latency slower by 1 + x (for the share
above 50 ms, by the factor that raises the share by x of itself), its conversion
propensity times 1 - x, its conversions' values times 1 - x (the preview is told their mean,
their coefficient of variation and the design effect of their mean per conversion, as
``--conversion-value`` and ``--design-effect`` would tell it: each unit's values log-normal
around its own typical value, which varies between units). A plan the preview says
detects nothing is drawn again.

Rates come with their 95% Wilson bounds; progress goes to stderr, one line a plan. The
last line printed is one JSON object. docs/benchmarks.md has the figures measured and how
long they took.

    python bench/power.py [--metrics error_rate,latency_p95,...] [--plans 6] [--runs 100]
                          [--seed 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from statistics import NormalDist
from typing import Any, get_args

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.core.common import EDGES_MS
from controller.core.rollouts import DEFAULT_PLAN, Guardrail, Metric, Plan, Stage
from controller.core.stats.latency import QUANTILE_Z, exceedance_bucket
from controller.core.stats.on_units import QUANTILES
from controller.core.stats.power import NOT_PREVIEWED, detectable
from controller.core.stats.regressing import Traffic
from tests.support.clustered import SHAPES, Judged, Shape, Tier, Treated, simulate_clustered

METRICS = tuple(m for m in get_args(Metric) if m not in NOT_PREVIEWED)
"""The metrics the preview prints a figure for."""
EDGE_MS = 50.0
"""The exceedance guardrail's edge (the gate rounds it to 50.1 ms): 3-8% of requests."""
PERCENTS = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0)
MINUTES = (10, 20, 30, 60, 120)
PER_HALF_HOUR = (20_000, 50_000, 100_000)
"""Requests a half hour to the flag, both arms."""
ERROR_RATES = (0.005, 0.01, 0.02, 0.05)
ALPHAS = (0.05, 0.0125, 0.00625)
"""The plan's alpha for its one guardrail and one stage: the level per test of a plan of one,
four, or two guardrails times four stages."""
SHAPE_NAMES = ("independent", "heavy_uniform", "no_heavy_failing")
CLUSTERED = Shape("clustered", (Tier(1.0, 5, 15),), error_rate=0.008, failing_share=0.004,
                  speed_sigma=0.3, units=2_000)  # fmt: skip
"""10 requests per unit, 0.4% of units failing half their requests: a design effect of 2."""
MIN_UNITS = 1000
"""The simulator draws at least this many units a stage."""
_NORMAL = NormalDist()
_HERMITE = np.polynomial.hermite_e.hermegauss(40)
"""Nodes and weights for an expectation over a unit's log speed, N(0, sigma²)."""


@dataclass(frozen=True)
class Drawn:
    """One plan of the bench: its stage, its traffic, and what the preview predicts."""

    metric: str
    plan: Plan
    shape: Shape
    traffic: Traffic
    effect: float


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- each shape's own arithmetic --------------------------------------------------------


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


def design_effect(shape: Shape, chances: np.ndarray, weights: np.ndarray) -> float:
    """(E[π(1 - π)] + (E[m²]/E[m]) Var(π)) / (R(1 - R)) of units' propensities π (``chances``
    with ``weights``), independent of their requests m: the variance per unit of Y - R·m is
    E[m π(1 - π)] + E[m²] Var(π), and as if requests were independent E[m] R(1 - R)."""
    mean, square = requests_per_unit(shape)
    r = float((weights * chances).sum())
    var = float((weights * (chances - r) ** 2).sum())
    within = float((weights * chances * (1 - chances)).sum())
    return max(1.0, (within + square / mean * var) / (r * (1 - r)))


def error_rate(shape: Shape, factor: float = 1.0) -> float:
    """The shape's error rate per request with every unit's propensity times ``factor``."""
    failing = min(1.0, shape.failing_rate * factor)
    ordinary = min(1.0, shape.error_rate * factor)
    return shape.failing_share * failing + (1 - shape.failing_share) * ordinary


def error_units(shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([shape.failing_rate, shape.error_rate]),
            np.array([shape.failing_share, 1 - shape.failing_share]))  # fmt: skip


def conversion_units(shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """Conversion propensities rate·exp(N(-s²/2, s)) at the Hermite nodes, s their sigma."""
    nodes, weights = _HERMITE
    s = shape.conversion_sigma
    return shape.conversion_rate * np.exp(s * nodes - s * s / 2), weights / weights.sum()


def faster_than(shape: Shape, ms: float) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's chance (at the Hermite nodes of its speed) that a request takes under
    ``ms``: 99.5% log-normal around 20 ms (sigma 0.5), 0.5% stalls around 400 ms (0.6)."""
    nodes, weights = _HERMITE
    speed = np.exp(shape.speed_sigma * nodes)
    body = np.array([_NORMAL.cdf(z) for z in np.log(ms / speed / 20.0) / 0.5])
    stall = np.array([_NORMAL.cdf(z) for z in np.log(ms / speed / 400.0) / 0.6])
    return 0.995 * body + 0.005 * stall, weights / weights.sum()


def latency_quantile(shape: Shape, q: float) -> float:
    low, high = math.log(0.1), math.log(1e6)
    for _ in range(80):
        middle = (low + high) / 2
        chances, weights = faster_than(shape, math.exp(middle))
        low, high = (middle, high) if (weights * chances).sum() < q else (low, middle)
    return math.exp(high)


def log_normal_at(shape: Shape, q: float, step: float = 0.002) -> tuple[float, float]:
    """The log-normal's median and sigma through the shape's latency quantiles at q ± step:
    for a quantile, the ranks its interval reads in the smaller arm (Woodruff's), so that
    the preview's standard error is the gate's."""
    step = min(step, q / 2, (1 - q) / 2)
    low, high = _NORMAL.inv_cdf(q - step), _NORMAL.inv_cdf(q + step)
    at_low, at_high = (
        math.log(latency_quantile(shape, q - step)),
        math.log(latency_quantile(shape, q + step)),
    )
    sigma = (at_high - at_low) / (high - low)
    return math.exp(at_low - sigma * low), sigma


def values(shape: Shape) -> tuple[float, float, float]:
    """A conversion's value, ``value_median``·exp(N(0, s_u))·exp(N(0, 1)) with s_u the
    shape's ``value_unit_sigma``: its mean, its coefficient of variation, and the design
    effect of the mean per conversion, (E[C]·E[v_u] + E[C²]·Var(μ_u)) / (E[C]·Var(v)) of the
    conversions C a unit makes (m requests at its propensity π, independent of its values),
    μ_u and v_u the mean and variance of its own values."""
    su2, e = shape.value_unit_sigma**2, math.e
    scale, scale_sq = (
        shape.value_median * math.exp(su2 / 2),
        shape.value_median**2 * math.exp(2 * su2),
    )
    between = e * (scale_sq - scale * scale)  # Var(μ_u), μ_u = S_u·e^0.5
    within = (e - 1) * e * scale_sq  # E[v_u], v_u = S_u²·(e - 1)·e
    mean_v = scale * math.exp(0.5)
    m, m_sq = requests_per_unit(shape)
    rate = shape.conversion_rate
    rate_sq = rate * rate * math.exp(shape.conversion_sigma**2)
    conversions, conversions_sq = m * rate, m * rate - m * rate_sq + m_sq * rate_sq
    spread = within + between
    deff = (conversions * within + conversions_sq * between) / (conversions * spread)
    return mean_v, math.sqrt(spread) / mean_v, max(1.0, deff)


def exceedance_edge() -> float:
    return EDGES_MS[exceedance_bucket(EDGE_MS) - 1]


def slower_share(shape: Shape, factor: float = 1.0) -> float:
    """The share of requests at or above the rounded edge with latency times ``factor``."""
    chances, weights = faster_than(shape, exceedance_edge() / factor)
    return 1.0 - float((weights * chances).sum())


def bisect_factor(rises: Callable[[float], float], target: float, high: float) -> float:
    """The factor in [1, high] at which ``rises`` (increasing) reaches ``target``."""
    if rises(high) < target:
        return math.inf
    low = 1.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if rises(middle) < target else (low, middle)
    return high


# --- the preview's inputs and the treatment for each metric ------------------------------


def metric_traffic(metric: str, shape: Shape, requests_per_s: float, smaller: float) -> Traffic:
    """What the preview is told of ``shape`` for ``metric``, the smaller arm expecting
    ``smaller`` requests by the stage's end."""
    mean, _ = requests_per_unit(shape)
    heavy_share, heavy_requests = heavy_units(shape)
    step = 0.002
    if metric in QUANTILES:
        q = QUANTILES[metric]
        units = faster_than(shape, latency_quantile(shape, q))
        step = QUANTILE_Z * math.sqrt(q * (1 - q) * design_effect(shape, *units) / smaller)
    elif metric == "latency_exceedance":
        q = 1.0 - slower_share(shape)
        units = faster_than(shape, exceedance_edge())
    else:
        q = 0.5
        units = error_units(shape) if metric == "error_rate" else conversion_units(shape)
    median, sigma = log_normal_at(shape, q, step)
    value_mean, value_cv, value_deff = values(shape)
    deff = value_deff if metric == "conversion_value" else design_effect(shape, *units)
    return Traffic(
        heavy_share=heavy_share,
        heavy_requests=heavy_requests,
        failing_share=shape.failing_share,
        failing_rate=shape.failing_rate if shape.failing_share else 0.0,
        requests_per_s=requests_per_s,
        requests_per_unit=mean,
        design_effect=deff,
        error_rate=error_rate(shape),
        conversion_rate=shape.conversion_rate,
        value_mean=value_mean,
        value_cv=value_cv,
        latency_median_ms=median,
        latency_sigma=sigma,
    )


def guardrail_of(metric: str) -> Guardrail:
    edge = EDGE_MS if metric == "latency_exceedance" else None
    return Guardrail(metric=metric, edge_ms=edge)  # type: ignore[arg-type]


def treated_at(metric: str, shape: Shape, relative: float) -> Treated | None:
    """The treatment that regresses ``metric`` by ``relative`` of itself; None if none can."""
    if metric == "error_rate":
        high = 1.0 / min(shape.error_rate, shape.failing_rate or 1.0)
        factor = bisect_factor(
            lambda f: error_rate(shape, f), error_rate(shape) * (1 + relative), high
        )
        return Treated(errors=factor) if math.isfinite(factor) else None
    if metric in QUANTILES:
        return Treated(latency=1.0 + relative)
    if metric == "latency_exceedance":
        target = slower_share(shape) * (1 + relative)
        factor = bisect_factor(lambda f: slower_share(shape, f), target, 1e4)
        return Treated(latency=factor) if math.isfinite(factor) else None
    if metric == "conversion_value":
        return Treated(values=1.0 - relative) if relative < 1.0 else None
    return Treated(conversions=1.0 - relative)


def previewed(
    metric: str, shape: Shape, stage: Stage, per_half_hour: float, alpha: float
) -> Drawn | None:
    """The plan of one stage and one guardrail on ``shape``, with the preview's figure; None
    when the preview says the stage detects nothing or no treatment reaches its figure."""
    mean, _ = requests_per_unit(shape)
    shape = replace(shape, units=max(MIN_UNITS, round(per_half_hour / mean)))
    guardrail = guardrail_of(metric)
    plan = Plan(stages=[stage], guardrails=[guardrail], alpha=alpha)
    seconds = stage.min_duration.total_seconds()
    units = max(MIN_UNITS, round(shape.units * seconds / 1800))  # as the simulator draws
    share = min(stage.percent, 100.0 - stage.percent) / 100.0
    traffic = metric_traffic(metric, shape, units * mean / seconds, units * mean * share)
    found = detectable(guardrail, stage.percent, seconds, traffic, plan)
    if found.effect is None or treated_at(metric, shape, found.effect) is None:
        return None
    return Drawn(metric, plan, shape, traffic, found.effect)


def draw(metric: str, rng: np.random.Generator) -> Drawn | None:
    base = SHAPES[str(rng.choice(SHAPE_NAMES))]
    shape = replace(base, error_rate=float(rng.choice(ERROR_RATES)))
    per_half_hour = float(rng.choice(PER_HALF_HOUR))
    percent = float(rng.choice(PERCENTS))  # before the length: the seed's plans stay as measured
    minutes = timedelta(minutes=int(rng.choice(MINUTES)))
    stage = Stage(percent=percent, min_duration=minutes, min_units_per_arm=0)
    return previewed(metric, shape, stage, per_half_hour, float(rng.choice(ALPHAS)))


def draw_plans(metric: str, count: int, seed: int) -> list[Drawn]:
    """``count`` drawn plans on ``metric``, then the clustered stage with a small arm, at
    0.0125 and, for a metric the default plan guards, at the default plan's level for it."""
    rng = np.random.default_rng([seed, METRICS.index(metric)])
    plans: list[Drawn] = []
    while len(plans) < count:
        drawn = draw(metric, rng)
        if drawn is not None:
            plans.append(drawn)
    small = Stage(percent=25.0, min_duration=timedelta(minutes=20), min_units_per_arm=0)
    levels = [0.0125]
    if metric in (g.key for g in DEFAULT_PLAN.guardrails):  # and at the default plan's level
        levels.append(DEFAULT_PLAN.alpha_for(metric))
    fixed = (previewed(metric, CLUSTERED, small, 20_000, level) for level in levels)
    return [*plans, *(f for f in fixed if f is not None)]


# --- the runs ----------------------------------------------------------------------------


def one_run(task: tuple[Drawn, float, int]) -> bool:
    """Whether the gate (its always-valid test at every look, its final look at the stage's
    end) rolled the stage back on its guardrail at ``share`` times the figure."""
    drawn, share, seed = task
    treated = treated_at(drawn.metric, drawn.shape, drawn.effect * share)
    outcomes = simulate_clustered(Judged(drawn.plan, {}), drawn.shape, seed=seed, treated=treated)
    return outcomes["plan"].stopped == drawn.plan.guardrails[0].key


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n), (centre + spread) / (1 + z * z / n)


def main(args: argparse.Namespace) -> dict[str, Any]:
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    skipped = {m: NOT_PREVIEWED[m] for m in metrics if m in NOT_PREVIEWED}
    plans = [d for m in metrics if m not in skipped for d in draw_plans(m, args.plans, args.seed)]
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
        full = sum(caught[at : at + args.runs])
        half = sum(caught[at + args.runs : at + 2 * args.runs])
        rows.append(_row(drawn, full, half, args.runs))
    _table(rows)
    per_metric = {
        m: _summary([r for r in rows if r["metric"] == m], args.runs)
        for m in metrics
        if m not in skipped
    }
    for metric, why in skipped.items():
        print(f"{metric}: {why}")
    return {
        "plans_per_metric": args.plans,
        "runs": args.runs,
        "metrics": per_metric,
        "not_previewed": skipped,
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }


def _summary(rows: list[dict[str, Any]], runs: int) -> dict[str, Any]:
    """A metric's runs together: the share caught at the figure and at half, bounds and all."""
    full = sum(round(r["caught"] * runs) for r in rows)
    half = sum(round(r["caught_half"] * runs) for r in rows)
    n = len(rows) * runs
    low, high = wilson(full, n)
    low_half, high_half = wilson(half, n)
    summary = {
        "plans": len(rows),
        "caught_at_predicted": round(full / n, 4),
        "caught_low95": round(low, 4),
        "caught_high95": round(high, 4),
        "caught_at_half": round(half / n, 4),
        "caught_half_high95": round(high_half, 4),
        "plans_within_70_90": sum(0.7 <= r["caught"] <= 0.9 for r in rows),
        "plans_half_below_50": sum(r["caught_half"] < 0.5 for r in rows),
    }
    within = 0.7 <= full / n <= 0.9 and half / n < 0.5
    print(
        f"{rows[0]['metric']}: caught {full / n:.1%} ({low:.1%}-{high:.1%}) at the figure,"
        f" {half / n:.1%} ({low_half:.1%}-{high_half:.1%}) at half;"
        f" {summary['plans_within_70_90']} of {len(rows)} plans within 70-90%,"
        f" {summary['plans_half_below_50']} under 50% at half: {'met' if within else 'MISSED'}"
    )
    return summary


def _row(drawn: Drawn, full: int, half: int, runs: int) -> dict[str, Any]:
    stage = drawn.plan.stages[0]
    low, high = wilson(full, runs)
    return {
        "metric": drawn.metric,
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
        "sign": "+" if drawn.plan.guardrails[0].lower_is_better else "-",
        "caught": full / runs,
        "caught_low95": round(low, 4),
        "caught_high95": round(high, 4),
        "caught_half": half / runs,
    }


def _table(rows: list[dict[str, Any]]) -> None:
    head = f"{'metric':<19}{'shape':<17}{'pct':>5}{'min':>5}{'req/s':>8}{'m':>6}{'deff':>6}"
    print(head + f"{'alpha':>9}{'predicted':>11}{'caught':>8}{'95% CI':>14}{'at half':>9}")
    for r in rows:
        print(
            f"{r['metric']:<19}{r['shape']:<17}{r['percent']:>5g}{r['minutes']:>5g}"
            f"{r['requests_per_s']:>8.1f}{r['requests_per_unit']:>6.1f}{r['design_effect']:>6.2f}"
            f"{r['alpha']:>9.4g}{r['sign'] + format(r['predicted'], '.0%'):>11}{r['caught']:>8.0%}"
            f"{r['caught_low95']:>7.0%}-{r['caught_high95']:<6.0%}{r['caught_half']:>9.0%}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    every = ",".join(METRICS)
    parser.add_argument("--metrics", default=every, help="comma-separated guardrail metrics")
    parser.add_argument("--plans", type=int, default=6, help="plans drawn per metric")
    parser.add_argument("--runs", type=int, default=100, help="runs per plan and effect")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parsed = parser.parse_args()
    print(json.dumps(main(parsed)))
