"""Crash guardrails on crash-looping traffic: false rollbacks and 2x crash rates caught.

Seeded rollouts (:mod:`tests.support.crashes`) of the default plan's stages (1% for 30 min,
5% for 1 h, 25% for 2 h, 50% for 4 h: 10,000, 20,000, 40,000 and 80,000 units) with
``crash_count`` its only guardrail (alpha 0.05 over the rollout, 0.0125 per stage), judged
by the real gate at every 5% growth of the stage's exposures. Units send 1-3 exposures
(80%), 10-50 (19%) or 300-2,000 (1%); an ordinary unit crashes at 1% per exposure times a
log-normal (sigma 1); a few crash-loop, one crash per exposure:

* ``looping``: 0.1% of units, 20-200 exposures each (37% of all crashes);
* ``heavy_looping``: 0.2% of units, 50-500 exposures each (75% of all crashes).

Per shape and run, an A/A stream (identical arms; any rollback is false, goal: at most
alpha) and a 2x stream (every treatment unit's crash rate doubled; goal: at least 95%
rolled back on crash_count). Each stream is also judged, at the same looks and the same
level, by the Poisson test that takes every crash as independent (``crash_count@poisson``).
Rates come with their 95% Wilson bound; the last line printed is one JSON object.

    python bench/crashes.py [--runs 200] [--workers 2] [--seed 1] [--shapes looping]
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

from tests.support.crashes import CRASH_PLAN, CrashShape, crash_share, simulate_crashes
from tests.support.simulation import Outcome

SHAPES = {
    "looping": CrashShape(looping_share=0.001, looping_exposures=(20, 200)),
    "heavy_looping": CrashShape(looping_share=0.002, looping_exposures=(50, 500)),
}
STREAMS = {"aa": 1.0, "2x": 2.0}
"""Each stream's treatment factor on every treated unit's crash rate."""


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def one_run(task: tuple[int, str, float]) -> dict[str, dict[str, Outcome]]:
    """Both streams of one seeded run on one shape."""
    seed, shape, growth = task
    return {
        stream: simulate_crashes(
            SHAPES[shape], seed=2 * seed + i, treatment_factor=factor, growth=growth
        )
        for i, (stream, factor) in enumerate(STREAMS.items())
    }


def wilson(hits: int, n: int, *, upper: bool, z: float = 1.96) -> float:
    """The 95% Wilson score bound of a rate of ``hits`` in ``n``."""
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre + spread if upper else centre - spread) / (1 + z * z / n)


def summarise(runs: list[dict[str, dict[str, Outcome]]]) -> dict[str, Any]:
    """Per judge: the A/A runs it stopped, and the 2x runs it stopped on crash_count."""
    n = len(runs)
    out: dict[str, Any] = {"false_rollback": {}, "caught_2x": {}}
    for name in ("plan", "crash_count@poisson"):
        stops = [r["aa"][name] for r in runs if r["aa"][name].stopped is not None]
        out["false_rollback"][name] = {
            "rate": len(stops) / n,
            "upper95": round(wilson(len(stops), n, upper=True), 4),
            "stages": sorted(o.stage for o in stops),
        }
        hits = [r["2x"][name] for r in runs if r["2x"][name].stopped == "crash_count"]
        out["caught_2x"][name] = {
            "rate": len(hits) / n,
            "lower95": round(wilson(len(hits), n, upper=False), 4),
            "by_stage": [sum(o.stage == s for o in hits) for s in range(4)],
            "median_exposures": statistics.median(o.seconds for o in hits) if hits else None,
        }
    return out


def main(args: argparse.Namespace) -> dict[str, Any]:
    shapes = args.shapes.split(",") if args.shapes else list(SHAPES)
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise SystemExit(f"unknown shapes {unknown}; known: {', '.join(SHAPES)}")
    tasks = [(args.seed * 1_000_003 + i, s, args.growth) for s in shapes for i in range(args.runs)]
    started = time.monotonic()
    results: dict[str, list[dict[str, dict[str, Outcome]]]] = {s: [] for s in shapes}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        answers = pool.map(one_run, tasks, chunksize=4)
        for done, ((_, shape, _), run) in enumerate(zip(tasks, answers, strict=True), start=1):
            results[shape].append(run)
            if done % max(1, len(tasks) // 10) == 0:
                progress(f"{done}/{len(tasks)} runs, {time.monotonic() - started:.0f} s")
    summary = {shape: summarise(runs) for shape, runs in results.items()}
    for shape, figures in summary.items():
        for name, f in figures["false_rollback"].items():
            progress(f"{shape} A/A {name}: false {f['rate']:.3f} (95% upper {f['upper95']:.3f})")
        for name, c in figures["caught_2x"].items():
            progress(f"{shape} 2x {name}: caught {c['rate']:.3f} (95% lower {c['lower95']:.3f})")
    return {
        "runs_per_shape": args.runs,
        "alpha": CRASH_PLAN.alpha,
        "alpha_per_test": CRASH_PLAN.alpha_for("crash_count"),
        "growth": args.growth,
        "looping_share_of_crashes": {s: round(crash_share(SHAPES[s]), 3) for s in shapes},
        "seconds": round(time.monotonic() - started, 1),
        "shapes": summary,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="seeded runs per shape")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shapes", default="", help="shapes to run (default: all)")
    parser.add_argument(
        "--growth", type=float, default=0.05, help="look again once the sample grew this much"
    )
    print(json.dumps(main(parser.parse_args())))
