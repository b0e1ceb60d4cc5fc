"""False rollbacks and caught regressions, per metric and per plan, through the real gate.

Seeded simulations (``tests/support/simulation.py``) of :data:`DEFAULT_PLAN`'s stages
(1% for 30 min, 5% for 1 h, 25% for 2 h, 50% for 4 h; the 100% stage has no
control arm) at ``--rate`` requests per second (each also an exposure), gated
at the daemon's cadence, with aggregates of the daemon's shape:

* **A/A**: treatment and control identical: 2% errors, 5% conversions with
  log-normal values (median 20, sigma 1.5: heavy-tailed), latency log-normal
  around 20 ms (sigma 0.5) with 0.5% stalls around 400 ms. Each stream is judged
  by the default plan (error rate and p99, alpha split over 2 guardrails x 4
  stages) and by six one-guardrail plans, one per metric (alpha split over 4
  stages); a rollback or pause of any of them is a false one. Goal: at most alpha
  (0.05) for each.
* **2x regressions**: per metric, treatment twice as bad (errors x2,
  conversions /2, values /2, latency x2 for p95 and p99, stalls x2 for the
  share above 250 ms), judged by that metric's one-guardrail plan; the error
  and latency regressions also by the default plan, which must name the
  regressed metric. Goal: at least 95% caught before the plan completes. The
  default plan's two regressions are judged again, on the same streams, by the
  default plan without its final look (``final_look_share: 0``): the median time
  to detection with the look over without it (goal: at most 1.1), and the median of
  the ratios paired by stream (steadier: both sides see the same stream).

Rates come with their 95% Wilson upper (false) or lower (caught) bound. The
last line printed is one JSON object. The default of 100 runs (about 5
minutes on 2 idle cores: 5-6 CPU seconds a run) is small but meaningful: a
false-rollback rate of 0 in 100 is below 3.7% with 95% confidence, under
alpha; more runs narrow every bound.

    python bench/aa.py [--runs 100] [--rate 200] [--seed 1] [--workers 2] [--growth 0.01]

**Clustered traffic** (``--traffic clustered``, :mod:`tests.support.clustered`): each stage
of the default plan draws units by its length, 10,000 a half hour (20,000 for one
request per unit): 10,000, 20,000, 40,000 and 80,000 units in its four stages, of one of the
review's shapes of real traffic: heavy units (1% send 300-2,000 requests) with 2% of units
failing half their requests, fewer of each, no heavy units, heavy units that fail alike,
units of different speed, bots (0.1% send 5,000 requests, none failing), and one unit that
sends 30-50% of all requests, a fifth of them failing, in either arm with even odds
(``one_unit``: a retrying client, a crawler, a synthetic monitor). Per shape, an
A/A stream is judged by the default plan and by one plan per metric, on units (the gate)
and, for comparison in the same run, as if requests were independent (``@requests``); a
second stream doubles treatment units' error propensity (power), a third their latency
(the p95 plan's power). Each plan is judged by the gate itself, its always-valid test at
every look and its final look at each stage's planned end (the ``@requests`` comparisons
are the always-valid test alone). Times are in requests. The
same doubled populations are tested on each unit's exact counts as well
(:mod:`bench.clustered_oracle`): with the gate's boundary at the gate's looks (what
buckets of units cost the gate) and, once per stage at its end, with a fixed-horizon z-test
(the most a test that may not stop early could see).

    python bench/aa.py --traffic clustered [--runs 200] [--shapes heavy_failing,bots] [--workers 2]
        [--equal-shares]

**Weighted alpha** (``--alpha-weights error_rate=3,latency_p99=1``): the default plan with those
weights beside the same plan with equal weights, on the same seeded streams: an A/A stream
(each plan's false rollbacks, goal: at most alpha), a 2x error stream and a 2x latency stream
(each plan's detections, the time to them and how many runs the weighted plan caught first).

    python bench/aa.py --alpha-weights error_rate=3,latency_p99=1 [--runs 100] [--workers 2]
        [--streams aa,2x_error_rate,2x_latency]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clustered_oracle import oracle_caught  # beside this script

from controller.core.common import ConfigError
from controller.core.rollouts.plan import DEFAULT_PLAN, Plan, parse_plan
from tests.support.clustered import SHAPES, Judged, Treated, simulate_clustered
from tests.support.simulation import METRICS, Outcome, Service, simulate, single_plans

PLAN_NAMES = {"error_rate": "error_rate", "latency": "latency_p99"}
"""The regressions the default plan has a guardrail for, and the one it must name."""
STREAMS = ("aa", "error_rate", "conversion_rate", "conversion_value", "latency", "stalls")
"""One identical-arms stream and one per kind of 2x regression."""
REGRESSED_BY = {"latency": "latency_p95", "stalls": "latency_exceedance"}
JUDGED_BY = {
    "aa": METRICS,
    "error_rate": ("error_rate",),
    "conversion_rate": ("conversion_rate",),
    "conversion_value": ("conversion_value",),
    "latency": ("latency_p95", "latency_p99"),
    "stalls": ("latency_exceedance",),
}


NO_LOOK = "@no_final_look"
NO_FINAL_LOOK = DEFAULT_PLAN.model_copy(update={"final_look_share": 0.0})
"""The default plan as it was before its final look: the time to detection's baseline."""
EQUAL_SHARES = DEFAULT_PLAN.model_copy(update={"alpha_weights": None})
"""The default plan with alpha split evenly over its guardrails: ``--alpha-weights``'s
baseline (the default plan itself weighs the error rate twice)."""


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def one_run(task: tuple[int, float, float]) -> dict[str, dict[str, Outcome]]:
    """Every stream of one seeded run: how each plan ended on it; the default plan's
    regressions again without its final look, on the same stream (paired)."""
    seed, rate, growth = task
    singles = single_plans()
    healthy = Service()
    outcomes = {}
    for index, stream in enumerate(STREAMS):
        regressed = REGRESSED_BY.get(stream, stream)
        treatment = healthy if stream == "aa" else healthy.regressed(regressed)
        judged = {m: singles[m] for m in JUDGED_BY[stream]}
        plans = {stream: (DEFAULT_PLAN, judged)}
        if stream in PLAN_NAMES:
            plans[f"{stream}{NO_LOOK}"] = (NO_FINAL_LOOK, {})
        for name, (plan, judging) in plans.items():
            outcomes[name] = simulate(
                plan,
                judging,
                seed=seed * len(STREAMS) + index,
                requests_per_second=rate,
                treatment=treatment,
                growth=growth,
            )
    return outcomes


def wilson(hits: int, n: int, *, upper: bool, z: float = 1.96) -> float:
    """The 95% Wilson score bound of a rate of ``hits`` in ``n``."""
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre + spread if upper else centre - spread) / (1 + z * z / n)


def summarise(runs: list[dict[str, dict[str, Outcome]]]) -> dict[str, Any]:
    n = len(runs)
    false: dict[str, Any] = {}
    for name in ("plan", *METRICS):
        stops = [r["aa"][name] for r in runs if r["aa"][name].stopped is not None]
        false[name] = {
            "rate": len(stops) / n,
            "upper95": round(wilson(len(stops), n, upper=True), 4),
            "stages": sorted(o.stage for o in stops),
            "on": sorted({str(o.stopped) for o in stops}),
        }
    caught: dict[str, Any] = {}
    for stream in STREAMS[1:]:
        for metric in JUDGED_BY[stream]:
            caught[metric] = _caught([r[stream][metric] for r in runs], metric)
        if stream in PLAN_NAMES:
            plan_outcomes = [r[stream]["plan"] for r in runs]
            caught[f"default_plan:{stream}"] = _caught(plan_outcomes, PLAN_NAMES[stream])
    return {
        "false_rollback": false,
        "caught_2x": caught,
        "detection_vs_no_final_look": _paired(runs),
    }


def _paired(runs: list[dict[str, dict[str, Outcome]]]) -> dict[str, Any]:
    """Per regression the default plan guards: the median time to detection with the final
    look and without it, on the same streams, and the median of the paired ratios."""
    paired: dict[str, Any] = {}
    for stream in PLAN_NAMES:
        pairs = [
            (r[stream]["plan"].seconds, r[f"{stream}{NO_LOOK}"]["plan"].seconds)
            for r in runs
            if r[stream]["plan"].stopped is not None
            and r[f"{stream}{NO_LOOK}"]["plan"].stopped is not None
        ]
        paired[stream] = {
            "both_caught": len(pairs),
            "median_s": round(statistics.median(a for a, _ in pairs), 1) if pairs else None,
            "median_s_without": round(statistics.median(b for _, b in pairs), 1) if pairs else None,
            "median_ratio": round(statistics.median(a / b for a, b in pairs if b), 3)
            if pairs
            else None,
        }
        if pairs:
            medians = paired[stream]["median_s"] / paired[stream]["median_s_without"]
            paired[stream]["ratio_of_medians"] = round(medians, 3)
    return paired


def _caught(outcomes: list[Outcome], metric: str) -> dict[str, Any]:
    hits = [o for o in outcomes if o.stopped is not None]
    n = len(outcomes)
    return {
        "rate": len(hits) / n,
        "lower95": round(wilson(len(hits), n, upper=False), 4),
        "on_its_own_guardrail": sum(o.stopped == metric for o in hits) / n,
        "in_first_stage": sum(o.stage == 0 for o in hits) / n,
        "median_s": round(statistics.median(o.seconds for o in hits), 1) if hits else None,
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    tasks = [(args.seed * 1_000_003 + i, args.rate, args.growth) for i in range(args.runs)]
    started = time.monotonic()
    runs: list[dict[str, dict[str, Outcome]]] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for run in pool.map(one_run, tasks, chunksize=max(1, args.runs // (8 * args.workers))):
            runs.append(run)
            if len(runs) % max(1, args.runs // 10) == 0:
                progress(f"{len(runs)}/{args.runs} runs, {time.monotonic() - started:.0f} s")
    summary = summarise(runs)
    for name, f in summary["false_rollback"].items():
        progress(f"A/A {name}: false rollbacks {f['rate']:.3f} (95% upper {f['upper95']:.3f})")
    for name, c in summary["caught_2x"].items():
        progress(
            f"2x {name}: caught {c['rate']:.3f} (95% lower {c['lower95']:.3f}), "
            f"first stage {c['in_first_stage']:.3f}, median {c['median_s']} s"
        )
    for stream, d in summary["detection_vs_no_final_look"].items():
        progress(
            f"2x {stream}, default plan: median time to detection {d['median_s']} s, "
            f"{d['median_s_without']} s without the final look (ratio "
            f"{d.get('ratio_of_medians')}; median of the paired ratios {d['median_ratio']}, "
            f"{d['both_caught']} runs caught both ways)"
        )
    return {
        "runs": args.runs,
        "alpha": DEFAULT_PLAN.alpha,
        "alpha_per_test_default_plan": DEFAULT_PLAN.alpha_per_test,
        "requests_per_second": args.rate,
        "growth": args.growth,
        "seconds": round(time.monotonic() - started, 1),
        **summary,
    }


def one_clustered_run(task: tuple[int, str, float, bool, bool]) -> dict[str, dict[str, Outcome]]:
    """The A/A and the 2x error streams of one seeded run on one shape of traffic (the A/A
    alone with ``aa_only``: the same stream as with the others), judged by the default plan
    (with its alpha split evenly where ``equal_shares``)."""
    seed, shape, growth, aa_only, equal_shares = task
    plan = EQUAL_SHARES if equal_shares else DEFAULT_PLAN
    singles = single_plans()
    aa = Judged(plan, singles, independent=True)
    if aa_only:
        return {"aa": simulate_clustered(aa, SHAPES[shape], seed=2 * seed, growth=growth)}
    power = Judged(plan, {"error_rate": singles["error_rate"]}, independent=True)
    oracle = oracle_caught(
        singles["error_rate"], SHAPES[shape], seed=2 * seed + 1, treatment_factor=2.0, growth=growth
    )
    slower = Judged(plan, {"latency_p95": singles["latency_p95"]})
    return {
        "aa": simulate_clustered(aa, SHAPES[shape], seed=2 * seed, growth=growth),
        "2x_errors": simulate_clustered(
            power, SHAPES[shape], seed=2 * seed + 1, treatment_factor=2.0, growth=growth
        ),
        "2x_latency": simulate_clustered(
            slower, SHAPES[shape], seed=2 * seed + 1, treated=Treated(latency=2.0), growth=growth
        ),
        "oracle": {
            name: Outcome(None if stage is None else "error_rate", stage or 0, 0.0)
            for name, stage in oracle.items()
        },
    }


def summarise_clustered(runs: list[dict[str, dict[str, Outcome]]]) -> dict[str, Any]:
    """Per judge, the share of A/A runs it stopped; the 2x error stream's detections."""
    n = len(runs)
    false: dict[str, Any] = {}
    for name in runs[0]["aa"]:
        stops = [r["aa"][name] for r in runs if r["aa"][name].stopped is not None]
        false[name] = {
            "rate": len(stops) / n,
            "upper95": round(wilson(len(stops), n, upper=True), 4),
            "stages": sorted(o.stage for o in stops),
        }
    if "2x_errors" not in runs[0]:
        return {"false_rollback": false}
    caught: dict[str, Any] = {}
    for name in runs[0]["2x_errors"]:
        outcomes = [r["2x_errors"][name] for r in runs]
        hits = [o for o in outcomes if o.stopped is not None]
        caught[name] = {
            "rate": len(hits) / n,
            "lower95": round(wilson(len(hits), n, upper=False), 4),
            "median_requests": statistics.median(o.seconds for o in hits) if hits else None,
        }
    slower: dict[str, Any] = {}
    for name in ("latency_p95",):
        hits = [r["2x_latency"][name] for r in runs if r["2x_latency"][name].stopped is not None]
        slower[name] = {
            "rate": len(hits) / n,
            "lower95": round(wilson(len(hits), n, upper=False), 4),
            "median_requests": statistics.median(o.seconds for o in hits) if hits else None,
        }
    gate = [r["2x_errors"]["error_rate"].stopped is not None for r in runs]
    oracle: dict[str, Any] = {}
    for name in runs[0]["oracle"]:
        found = [r["oracle"][name].stopped is not None for r in runs]
        oracle[name] = {
            "rate": sum(found) / n,
            "lower95": round(wilson(sum(found), n, upper=False), 4),
            "runs_agreeing_with_gate": sum(g == h for g, h in zip(gate, found, strict=True)),
        }
    return {
        "false_rollback": false,
        "caught_2x_errors": caught,
        "caught_2x_p95_latency": slower,
        "oracle_2x_errors": oracle,
    }


def main_clustered(args: argparse.Namespace) -> dict[str, Any]:
    shapes = args.shapes.split(",") if args.shapes else list(SHAPES)
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise SystemExit(f"unknown shapes {unknown}; known: {', '.join(SHAPES)}")
    started = time.monotonic()
    tasks = [
        (args.seed * 1_000_003 + i, s, args.growth, args.aa_only, args.equal_shares)
        for s in shapes
        for i in range(args.runs)
    ]
    results: dict[str, list[dict[str, dict[str, Outcome]]]] = {s: [] for s in shapes}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        answers = pool.map(one_clustered_run, tasks, chunksize=4)
        for done, ((_, shape, *_), run) in enumerate(zip(tasks, answers, strict=True), start=1):
            results[shape].append(run)
            if done % max(1, len(tasks) // 20) == 0:
                progress(f"{done}/{len(tasks)} runs, {time.monotonic() - started:.0f} s")
    summary = {shape: summarise_clustered(runs) for shape, runs in results.items()}
    for shape, figures in summary.items():
        for name, f in figures["false_rollback"].items():
            rate, upper = f["rate"], f["upper95"]
            progress(f"{shape} A/A {name}: false rollbacks {rate:.3f} (95% upper {upper:.3f})")
        for name, c in figures.get("caught_2x_errors", {}).items():
            progress(
                f"{shape} 2x errors {name}: caught {c['rate']:.3f}, median {c['median_requests']}"
            )
        for name, c in figures.get("caught_2x_p95_latency", {}).items():
            progress(f"{shape} 2x latency {name}: caught {c['rate']:.3f}")
        for name, o in figures.get("oracle_2x_errors", {}).items():
            progress(
                f"{shape} 2x errors, {name} test on each unit's counts: caught {o['rate']:.3f}"
                f" ({o['runs_agreeing_with_gate']} runs as the gate's error_rate)"
            )
    return {
        "traffic": "clustered",
        "runs_per_shape": args.runs,
        "alpha": DEFAULT_PLAN.alpha,
        "growth": args.growth,
        "seconds": round(time.monotonic() - started, 1),
        "shapes": summary,
    }


WEIGHED_STREAMS = {"aa": None, "2x_error_rate": "error_rate", "2x_latency": "latency_p99"}
"""The A/A stream, and a stream per regression with the guardrail that must catch it."""


def weighted_plan(text: str) -> Plan:
    """The default plan with ``error_rate=3,latency_p99=1``'s weights, validated as any plan."""
    weights: dict[str, str] = {}
    for part in text.split(","):
        key, equals, value = part.partition("=")
        if not equals:
            raise SystemExit(f"--alpha-weights: {part!r} is not key=weight")
        weights[key.strip()] = value.strip()
    data = {**DEFAULT_PLAN.model_dump(mode="json"), "alpha_weights": weights}
    try:
        return parse_plan(data, source="--alpha-weights")
    except ConfigError as exc:
        raise SystemExit(str(exc)) from exc


WeightedTask = tuple[int, float, float, Plan, tuple[str, ...]]


def one_weighted_run(task: WeightedTask) -> dict[str, dict[str, Outcome]]:
    """Each chosen stream of one seeded run, judged by the equal and the weighted plan alike."""
    seed, rate, growth, weighted, streams = task
    healthy = Service()
    treatments = {"aa": healthy, "2x_error_rate": healthy.regressed("error_rate")}
    treatments["2x_latency"] = healthy.regressed("latency_p99")
    out: dict[str, dict[str, Outcome]] = {}
    for index, (stream, treatment) in enumerate(treatments.items()):
        if stream not in streams:
            continue  # the others keep their seeds: a stream is the same run after run
        out[stream] = {
            name: simulate(
                plan,
                {},
                seed=seed * len(treatments) + index,  # the same stream for both plans
                requests_per_second=rate,
                treatment=treatment,
                growth=growth,
            )["plan"]
            for name, plan in (("equal", EQUAL_SHARES), ("weighted", weighted))
        }
    return out


def summarise_weighted(runs: list[dict[str, dict[str, Outcome]]]) -> dict[str, Any]:
    """Per plan: A/A false rollbacks; per regression, caught on its guardrail and how soon."""
    n = len(runs)
    out: dict[str, Any] = {}
    for name in ("equal", "weighted"):
        out[name] = {}
        if "aa" in runs[0]:
            stops = sum(r["aa"][name].stopped is not None for r in runs)
            out[name]["false_rollback"] = stops / n
            out[name]["upper95"] = round(wilson(stops, n, upper=True), 4)
        for stream, metric in WEIGHED_STREAMS.items():
            if metric is not None and stream in runs[0]:
                out[name][stream] = _caught([r[stream][name] for r in runs], metric)
    for stream, metric in WEIGHED_STREAMS.items():
        if metric is not None and stream in runs[0]:
            out[f"weighted_first:{stream}"] = (
                sum(_sooner(r[stream]["weighted"], r[stream]["equal"], metric) for r in runs) / n
            )
    return out


def _sooner(one: Outcome, other: Outcome, metric: str) -> bool:
    """Whether ``one`` caught ``metric`` strictly before ``other`` did (or than never)."""
    if one.stopped != metric:
        return False
    return other.stopped != metric or one.seconds < other.seconds


def main_weighted(args: argparse.Namespace) -> dict[str, Any]:
    weighted = weighted_plan(args.alpha_weights)
    streams = tuple(args.streams.split(",")) if args.streams else tuple(WEIGHED_STREAMS)
    unknown = [s for s in streams if s not in WEIGHED_STREAMS]
    if unknown:
        raise SystemExit(f"unknown streams {unknown}; known: {', '.join(WEIGHED_STREAMS)}")
    seeds = [args.seed * 1_000_003 + i for i in range(args.runs)]
    tasks = [(seed, args.rate, args.growth, weighted, streams) for seed in seeds]
    started = time.monotonic()
    runs: list[dict[str, dict[str, Outcome]]] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for run in pool.map(one_weighted_run, tasks, chunksize=max(1, args.runs // 16)):
            runs.append(run)
            if len(runs) % max(1, args.runs // 10) == 0:
                progress(f"{len(runs)}/{args.runs} runs, {time.monotonic() - started:.0f} s")
    summary = summarise_weighted(runs)
    for name in ("equal", "weighted"):
        f = summary[name]
        if "false_rollback" in f:
            false = f"false rollbacks {f['false_rollback']:.3f} (95% upper {f['upper95']})"
            progress(f"A/A {name}: {false}")
        for stream in ("2x_error_rate", "2x_latency"):
            if stream not in f:
                continue
            c = f[stream]
            progress(
                f"{stream} {name}: on its guardrail {c['on_its_own_guardrail']:.3f},"
                f" median {c['median_s']} s; weighted first {summary[f'weighted_first:{stream}']}"
            )
    return {
        "runs": args.runs,
        "alpha": weighted.alpha,
        "alpha_weights": weighted.alpha_weights,
        "levels": {
            name: {g.key: plan.alpha_for(g.key) for g in plan.guardrails}
            for name, plan in (("equal", EQUAL_SHARES), ("weighted", weighted))
        },
        "requests_per_second": args.rate,
        "growth": args.growth,
        "seconds": round(time.monotonic() - started, 1),
        **summary,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--traffic",
        choices=("independent", "clustered"),
        default="independent",
        help="one request per unit (the default), or the shapes of real traffic",
    )
    parser.add_argument("--shapes", default="", help="clustered: shapes to run (default: all)")
    parser.add_argument(
        "--aa-only",
        action="store_true",
        help="clustered: the A/A streams alone (false rollbacks; about a third of the time)",
    )
    parser.add_argument(
        "--equal-shares",
        action="store_true",
        help="clustered: the default plan with alpha split evenly over its guardrails (its"
        " error rate weighs twice by default)",
    )
    parser.add_argument("--runs", type=int, default=100, help="seeded runs of every stream")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument(
        "--growth", type=float, default=0.01, help="look again once the sample grew this much"
    )
    parser.add_argument(
        "--alpha-weights",
        default="",
        help="the default plan with these guardrail weights (error_rate=3,latency_p99=1)"
        " beside equal weights, on the same streams",
    )
    parser.add_argument(
        "--streams",
        default="",
        help="--alpha-weights: the streams to run (aa,2x_error_rate,2x_latency; default: all)",
    )
    parsed = parser.parse_args()
    if parsed.alpha_weights:
        print(json.dumps(main_weighted(parsed)))
    elif parsed.traffic == "clustered":
        if "--growth" not in sys.argv:
            parsed.growth = 0.05
        print(json.dumps(main_clustered(parsed)))
    else:
        print(json.dumps(main(parsed)))
