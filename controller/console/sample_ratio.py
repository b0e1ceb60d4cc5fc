"""The rollout page's sample-ratio section: the check now, the comparison, each arm's counts.

Pure: the rollout's status and gate history in, an HTML fragment out. Where the rollout
ended, the last recorded gate's check is shown; a ring is described with its audience and
what it was compared against (a concurrent control, or absolute limits); a holdout whose
cohort is missing reads as a mismatch, in the holdout report's words.
"""

from __future__ import annotations

from controller.console.pages import clock, esc, section
from controller.core.reading import (
    ArmLatency,
    Evidence,
    RolloutHistory,
    RolloutView,
    holdout_line,
    limits_comparison,
    ms_text,
    ratio_word,
)


def srm_section(status: RolloutView, history: RolloutHistory) -> str:
    """The sample-ratio check now, or as the last recorded gate saw it once the rollout ended."""
    now = Evidence.read(status.evidence)
    compared = limits_comparison(status.evidence, status.limits_gated)
    note = f'<p class="comparison"><b>Comparison</b>: {esc(compared)}</p>' if compared else ""
    if (ring := now.audience) is not None:
        against = "absolute limits" if compared else "a concurrent control"
        note = (
            f'<p class="audience"><b>Audience</b>: {esc(ring.text())},'
            f" compared against {against}</p>{note}"
        )
    latency = now.latency or {}
    arms = {
        arm: _arm_cells(counts, latency.get(arm))
        for arm, counts in (now.arms or {}).items()
        if counts is not None
    }
    points = history.points()
    if now.srm is not None:
        srm = now.srm
        word = srm.word()  # "no units yet" on 0 against 0: no ratio was checked
        kind = word if word in ("mismatch", "ok") else "none"  # one arm: nothing to check
        said = ratio_word(word, status.holdout)
        kind = "mismatch" if said != word else kind  # the holdout's cohort is missing
        text = (
            f'<p class="srm {kind}"><b>{said}</b>: {_units(srm.observed_treatment)}'
            f" treatment units against {_num(srm.expected_treatment)} expected;"
            f" sequential p = {_num(srm.sequential_p_value)}"
            f" (threshold {_num(srm.p_threshold)})</p>"
        )
    elif points:
        last = points[-1]
        arms = {arm: _arm_cells(c, None) for arm, c in last.arms.items()}
        text = (
            f'<p class="srm">At the last recorded gate ({esc(clock(last.ts_ms))},'
            f" {esc(history.names().get(last.stage, ''))}): sequential p ="
            f" {_num(last.srm_p)}</p>"
        )
    else:
        text = '<p class="none">No gate evidence yet.</p>'
    if status.holdout is not None:
        text += f'<p class="srm holdout">{esc(holdout_line(status.holdout))}</p>'
    rows = "".join(
        f'<tr><th scope="row">{esc(arm)}</th>'
        + "".join(f"<td>{esc(cell)}</td>" for cell in cells)
        + "</tr>"
        for arm, cells in arms.items()
    )
    head = "".join(f'<th scope="col">{k}</th>' for k in _ARM_HEAD)
    table = (
        '<div class="scroll" tabindex="0" role="region" aria-label="arms">'
        f'<table class="arms"><thead><tr><th scope="col">arm</th>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
        if rows
        else ""
    )
    return section("srm", "Sample ratio", note + text + table)


_ARM_COLUMNS = ("units", "exposures", "requests", "errors", "conversions")
_ARM_HEAD = (*_ARM_COLUMNS, "latency p50 (ms)", "p95 (ms)", "p99 (ms)")


def _arm_cells(counts: object, latency: ArmLatency | None) -> tuple[str, ...]:
    """An arm's counts, then its own latency (``-`` where the gate gave none)."""
    tally = tuple(str(getattr(counts, k, None) or 0) for k in _ARM_COLUMNS)
    q = latency or ArmLatency()
    return tally + tuple(ms_text(v).removesuffix(" ms") for v in (q.p50, q.p95, q.p99))


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _units(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value.is_integer() else f"{value:g}"
