"""The console's holdout page: everyone else against the held-out units, together and per flag.

Pure: the report ``GET /holdouts/{name}`` serves
(:class:`controller.core.holdouts.HoldoutReport`) in, an HTML fragment out. A guardrail's
row is :func:`holdout_cells`, which ``rolloutctl report --holdout`` writes too, each
number in its unit as every text writes it (:func:`controller.core.reading.quantity_text`).
Every value passes through :func:`esc`.
"""

from __future__ import annotations

import math
from urllib.parse import quote

from controller.console.pages import esc, flag_url
from controller.core.holdouts import Comparison, GuardrailComparison, HoldoutReport
from controller.core.reading import amount_text, harm_edge, limit_text, quantity_text
from controller.core.rollouts import LOWER_IS_BETTER, metric_of

VERDICTS = {
    "regressed": "regressed",
    "no_regression_seen": "no regression seen",
    "too_little_data": "too little data yet",
}


def holdout_url(name: str) -> str:
    return "/ui/holdouts/" + quote(name, safe="")


def holdout_link(name: str) -> str:
    """A link to the holdout's page, for a rollout naming it."""
    return (
        f'<p class="holdout-link"><a href="{esc(holdout_url(name))}">'
        f"Holdout {esc(name)}: what every release naming it did, against its units</a></p>"
    )


def holdout_detail(report: HoldoutReport) -> str:
    """The holdout page's fragment: a heading, what it compares, then each comparison."""
    where = f" in {report.environment}" if report.environment else ""
    tests = len(report.flags) + (report.cumulative is not None)
    parts = [
        f'<h1 data-holdout="{esc(report.holdout)}">Holdout {esc(report.holdout)}{esc(where)}</h1>',
        f"<p>{esc(f'{report.percent:g}')}% of units are held out of every release naming it,"
        " compared with everyone else on each flag's guardrails by the gate's tests on units."
        f" A regression is named with probability at most {esc(f'{report.alpha:g}')} over all"
        f" {tests} comparisons when the releases changed nothing.</p>",
    ]
    if report.cumulative is not None:
        parts.append(_comparison("Everything released, together", report.cumulative))
    for compared in report.flags:
        versions = ", ".join(map(str, compared.versions))
        title = (
            f'<a href="{esc(flag_url(compared.scope))}">{esc(compared.scope)}</a>'
            f" (flag versions {esc(versions)})"
        )
        parts.append(_comparison(title, compared, escaped=True))
    return "".join(parts)


def _comparison(title: str, compared: Comparison, *, escaped: bool = False) -> str:
    heading = title if escaped else esc(title)
    ratio = ""
    if compared.sample_ratio_mismatch:
        said = compared.sample_ratio or "the holdout's share is not its percent"
        ratio = f" <strong>Sample ratio mismatch</strong>: {esc(said)}."
    warning = (
        ""
        if compared.trusted
        else "<p><strong>Not evidence</strong>: a sample-ratio check failed.</p>"
    )
    rows = "".join(_row(g) for g in compared.guardrails)
    return (
        f'<section class="comparison" data-scope="{esc(compared.scope)}"'
        f' data-trusted="{str(compared.trusted).lower()}"><h2>{heading}</h2>'
        f"<p>Units: {compared.rest_units:,} everyone else, {compared.holdout_units:,} held out;"
        f" requests: {compared.rest_requests:,} and {compared.holdout_requests:,}.{ratio}</p>"
        f"{warning}<table><thead><tr><th>guardrail</th><th>everyone else</th><th>holdout</th>"
        "<th>difference [bound] (lift)</th><th>tolerance</th><th>verdict</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def holdout_cells(g: GuardrailComparison) -> tuple[str, str, str, str, str, str]:
    """A guardrail's row in words, unescaped: its key, everyone else's and the holdout's rate,
    the difference with its bound and the lift over the holdout, the tolerance, the verdict."""
    # Rounded as a gate's interval is, keeping each number on its side of the tolerance.
    edge = harm_edge(g.tolerance, _direction(g.guardrail))
    difference, tolerance = "-", "-" if edge is None else amount_text(g.guardrail, edge)
    if g.delta is not None:
        lower = -math.inf if g.lower is None else g.lower
        upper = math.inf if g.upper is None else g.upper
        difference = quantity_text(
            g.guardrail, g.delta, lower, upper, g.holdout, named=False, limit=edge
        )
        if edge is not None:
            tolerance = limit_text(g.guardrail, edge, g.delta, lower, upper)
    return (
        g.guardrail,
        _rate(g.rest),
        _rate(g.holdout),
        difference,
        tolerance,
        VERDICTS[g.verdict],
    )


def _direction(key: str) -> str:
    """Which way a guardrail's metric is better, from its key (the comparison names none)."""
    return "lower_is_better" if metric_of(key) in LOWER_IS_BETTER else "higher_is_better"


def _row(g: GuardrailComparison) -> str:
    cells = "".join(f"<td>{esc(cell)}</td>" for cell in holdout_cells(g)[:-1])
    return (
        f'<tr data-guardrail="{esc(g.guardrail)}" data-verdict="{esc(g.verdict)}">{cells}'
        f'<td class="verdict">{esc(VERDICTS[g.verdict])}</td></tr>'
    )


def _rate(value: float | None) -> str:
    """A rate metric's share in percent; ``-`` for the metrics that have none."""
    return "-" if value is None or not math.isfinite(value) else f"{value:.2%}"
