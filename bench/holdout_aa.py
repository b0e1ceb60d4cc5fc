"""A holdout's report on the traffic real services send: false regressions and power.

Each run releases three flags naming one holdout (``--percent``, 2% by default). Each
flag's users are drawn as :mod:`tests.support.clustered` draws a stage's, in one of the
review's shapes (heavy users, failing accounts, bots, slow users: ``--shapes``), with
``--units`` users per flag; everyone else's requests and the holdout's arrive interleaved,
and the report (:func:`controller.core.holdouts.holdout_report`: each flag's comparison and
the cumulative one, on error rate, p95 and conversion rate) is read at every look, a
quarter more requests apart, as an operator refreshing it would.

* **A/A**: the releases changed nothing. A run is false when any look names any
  regression, in any comparison: the report promises at most ``alpha`` (0.05).
* **Power**: one flag's release doubles its users' error propensity. A run is caught
  when that flag's comparison names the error rate by the last look (and the
  cumulative one, shown apart).

Shares come with their 95% Wilson bound (upper for false, lower for caught). The last
line printed is one JSON object.

    python bench/holdout_aa.py [--runs 100] [--units 100000] [--percent 2] [--workers 2]
        [--shapes heavy_failing,bots]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.core.holdouts import FlagCells, HoldoutReport, holdout_report
from controller.core.rollouts.plan import DEFAULT_PLAN
from controller.core.rollouts.plan_parts import Guardrail
from controller.core.stats.aggregates import ArmAggregate
from controller.core.wire import Holdout
from tests.support.clustered import SHAPES
from tests.support.holdout_sim import holdout_looks

PLAN = DEFAULT_PLAN.model_copy(
    update={
        "guardrails": [
            Guardrail(metric="error_rate"),
            Guardrail(metric="latency_p95", tolerance=0.10, relative=True),
            Guardrail(metric="conversion_rate"),
        ],
        "alpha_weights": None,
    }
)
FLAGS = 3
REGRESSED = 1
"""The flag whose release doubles its users' errors in a power run."""


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def wilson(hits: int, n: int, *, upper: bool, z: float = 1.96) -> float:
    """The 95% Wilson score bound of a share of ``hits`` in ``n``."""
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre + spread if upper else centre - spread) / (1 + z * z / n)


def one_run(task: tuple[str, int, int, float, float]) -> dict[str, bool]:
    """One seeded run of ``shape``: was a regression named (A/A), was it caught (power)."""
    shape_name, seed, units, percent, factor = task
    shape, holdout = SHAPES[shape_name], Holdout(name="bench", percent=percent)
    rng = np.random.default_rng(seed)
    streams = [
        list(holdout_looks(shape, rng, units=units, percent=percent,
                           rest_factor=factor if f == REGRESSED else 1.0))
        for f in range(FLAGS)
    ]  # fmt: skip
    named = flagged = cumulative = False
    for look in range(max(len(s) for s in streams)):
        report = _report(holdout, [s[min(look, len(s) - 1)] for s in streams])
        if any(c.regressed for c in (*report.flags, report.cumulative) if c is not None):
            named = True
        flagged = _errors_named(report, f"f{REGRESSED}")
        cumulative = _errors_named(report, "cumulative")
    return {"named": named, "caught": flagged, "cumulative": cumulative}


def _report(holdout: Holdout, groups: list[tuple[ArmAggregate, ArmAggregate]]) -> HoldoutReport:
    cells = [FlagCells(f"f{i}", PLAN, (1,), rest, held) for i, (rest, held) in enumerate(groups)]
    return holdout_report(holdout, cells)


def _errors_named(report: HoldoutReport, scope: str) -> bool:
    compared = [c for c in (*report.flags, report.cumulative) if c is not None]
    return any(
        c.scope == scope and g.guardrail == "error_rate" and g.verdict == "regressed"
        for c in compared
        for g in c.guardrails
    )


def main(args: argparse.Namespace) -> dict[str, Any]:
    shapes = args.shapes.split(",") if args.shapes else list(SHAPES)
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise SystemExit(f"--shapes: no shape {', '.join(unknown)} (known: {', '.join(SHAPES)})")
    out: dict[str, Any] = {"runs": args.runs, "units": args.units, "percent": args.percent}
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for shape in shapes:
            aa = [(shape, args.seed + i, args.units, args.percent, 1.0) for i in range(args.runs)]
            power = [(shape, 10**6 + args.seed + i, args.units, args.percent, 2.0)
                     for i in range(args.runs)]  # fmt: skip
            false = sum(r["named"] for r in pool.map(one_run, aa))
            powered = list(pool.map(one_run, power))
            caught = sum(r["caught"] for r in powered)
            cumulative = sum(r["cumulative"] for r in powered)
            n = args.runs
            out[shape] = {
                "false": round(false / n, 4),
                "false_upper95": round(wilson(false, n, upper=True), 4),
                "caught_2x_errors": round(caught / n, 4),
                "caught_lower95": round(wilson(caught, n, upper=False), 4),
                "cumulative_caught": round(cumulative / n, 4),
            }
            got = out[shape]
            progress(
                f"{shape}: A/A false {got['false']:.3f} (95% upper {got['false_upper95']:.3f});"
                f" 2x errors caught {got['caught_2x_errors']:.3f}, in the cumulative"
                f" {got['cumulative_caught']:.3f} ({time.monotonic() - started:.0f} s)"
            )
    return out


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="seeded runs per shape (100)")
    parser.add_argument("--units", type=int, default=100_000, help="users per flag (100,000)")
    parser.add_argument("--percent", type=float, default=2.0, help="the holdout's percent (2)")
    parser.add_argument("--shapes", help="comma-separated shapes (all)")
    parser.add_argument("--seed", type=int, default=1, help="first seed (1)")
    parser.add_argument("--workers", type=int, default=2, help="processes (2)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(main(parse(sys.argv[1:]))))
