"""``rolloutctl report --holdout NAME``: a holdout against everyone else, in Markdown or JSON.

Read from the controller's ``GET /holdouts/{name}``
(:func:`controller.core.holdouts.holdout_report`): the cumulative comparison first (every
flag naming the holdout, together), then each flag's. A comparison whose sample-ratio
check failed is shown, with its numbers marked as no evidence.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from controller.console.holdout import holdout_cells
from controller.core.holdouts import (
    DEFAULT_ALPHA,
    MIN_ALPHA,
    Comparison,
    GuardrailComparison,
    HoldoutReport,
)
from controller.ctl.exits import EXIT_FAILURE, EXIT_OK
from controller.ctl.looking import diagnosis
from controller.ctl.report.audit_export import parse_time
from controller.ctl.terminal import env_url, print_json, warn
from controller.ctl.usage import UsageError


def run(args: argparse.Namespace) -> int:
    """Fetch the holdout's report and print it; 1 where no rollout names the holdout."""
    if args.html is not None:
        raise UsageError("--html: a holdout's report is Markdown or --json")
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    if not MIN_ALPHA <= alpha < 0.5:
        raise UsageError(f"--alpha: {alpha} is not from 0.000001 to below 0.5")
    base = env_url(args.url)
    query = {"alpha": repr(alpha)}
    if args.environment:
        query["environment"] = args.environment
    if args.since is not None:
        now = datetime.now(UTC)
        query["since"] = parse_time(args.since, now=now, flag="--since").isoformat()
    path = f"/holdouts/{quote(args.holdout, safe='')}?{urlencode(query)}"
    answer = diagnosis.fetch(base, path, timeout_s=args.timeout)
    if answer.status == 404:
        warn(f"no rollout names holdout {args.holdout!r}" + _where(args.environment))
        return EXIT_FAILURE
    if answer.status != 200:
        raise diagnosis.refused(base, path, answer)
    report = diagnosis.served(HoldoutReport, answer.json(), base + path, "holdout report")
    if args.json:
        print_json(report.model_dump(mode="json"))
    else:
        sys.stdout.write(markdown(report))
    return EXIT_OK


def _where(environment: str | None) -> str:
    return f" in {environment}" if environment else ""


def markdown(report: HoldoutReport) -> str:
    """The report in Markdown: the cumulative comparison, then each flag's."""
    tests = len(report.flags) + (report.cumulative is not None)
    since = (
        ""
        if report.since is None
        else f", releases started since {report.since:%Y-%m-%d %H:%M} UTC"
    )
    lines = [
        f"# Holdout {report.holdout}{_where(report.environment)}{since}",
        "",
        f"{_percent(report.percent)} of units are held out of every release naming it."
        " Everyone else is compared with them on each flag's guardrails, with the gate's"
        " tests on units; the bounds hold however often this is read. A regression is"
        f" named with probability at most {report.alpha:g} over all {tests} comparisons"
        " when the releases changed nothing.",
    ]
    if report.cumulative is not None:
        lines += ["", "## Everything released, together", "", *_comparison(report.cumulative)]
    for flag in report.flags:
        versions = ", ".join(map(str, flag.versions))
        lines += ["", f"## {flag.scope} (flag versions {versions})", "", *_comparison(flag)]
    return "\n".join(lines) + "\n"


def _comparison(compared: Comparison) -> list[str]:
    units = (
        f"Units: {compared.rest_units:,} everyone else, {compared.holdout_units:,} held out;"
        f" requests: {compared.rest_requests:,} and {compared.holdout_requests:,}."
    )
    said = compared.sample_ratio or "the holdout's share of units is not its percent"
    if compared.sample_ratio_mismatch:
        units += f" **Sample ratio mismatch**: {said}."
    elif compared.sample_ratio_mismatch is False:
        units += " Sample ratio as expected" + (f": {said}." if compared.sample_ratio else ".")
    if compared.overlap is not None and compared.overlap > 1:
        units += f" {_overlap(compared.overlap)}"
    lines = [units, ""]
    if not compared.trusted:
        lines += ["**Not evidence**: a sample-ratio check failed; find why first.", ""]
    lines += [
        "| guardrail | everyone else | holdout | difference [bound] (lift) | tolerance | verdict |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_row(g) for g in compared.guardrails]
    return lines


def _overlap(overlap: float) -> str:
    """The cumulative comparison's units, said: each once, though several flags counted it."""
    return (
        f"Each unit is counted once, though the flags count {overlap:.2f} times as many"
        " (a unit under several flags); the test allows for it."
    )


def _row(g: GuardrailComparison) -> str:
    *cells, verdict = holdout_cells(g)
    shown = f"**{verdict}**" if g.verdict == "regressed" else verdict
    return "| " + " | ".join([*cells, shown]) + " |"


def _percent(value: float) -> str:
    return f"{value:g}%"
