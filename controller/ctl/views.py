"""Text views for operators: the status table, one rollout in detail, decision lines.

Pure functions of what the controller serves (``/rollouts``, read into
:class:`~controller.core.views.RolloutStatus`) and publishes (a
:class:`~controller.core.messages.Decision` or an
:class:`~controller.core.messages.Alert`), so ``rolloutctl`` output is
testable without a terminal. A gate's ``evidence`` stays an open object and is
read defensively, as every version served it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from controller.core.limits import comparison_text
from controller.core.messages import Alert, Decision
from controller.core.text import displayable
from controller.core.timestamps import as_datetime
from controller.core.views import RolloutStatus
from controller.core.wording import (
    amount_text,
    decided_at,
    guardrail_text,
    label_of,
    percent_text,
)

_COLUMNS = ("FLAG", "PHASE", "STAGE", "PERCENT", "IN STAGE", "UNITS T/C", "ERRORS T/C", "GATE")


def status_table(rollouts: Sequence[RolloutStatus]) -> str:
    """One line per rollout: phase, stage, percent, time in stage, arms, the gate's view."""
    if not rollouts:
        return "no rollouts"
    # Cleaned before measuring: a cell's width is what a terminal shows of it.
    rows = [_COLUMNS, *(tuple(displayable(cell) for cell in _row(r)) for r in rollouts)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    table = "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
    # Below the table, one line for each rollout that stands still: why, and until when.
    still = [displayable(f"{r.flag}: {r.next_move.why}") for r in rollouts if r.next_move]
    return "\n".join([table, "", *still]) if still else table


def _row(r: RolloutStatus) -> tuple[str, ...]:
    arms = r.evidence.get("arms", {})
    t, c = arms.get("treatment", {}), arms.get("control", {})
    return (
        r.flag,
        _phase(r),
        _label(r) or "-",
        percent_text(r.percent),
        _duration(r.time_in_stage_s) if r.verdict else "-",
        f"{t.get('units', '-')}/{c.get('units', '-')}" if arms else "-",
        f"{_rate(t)}/{_rate(c)}" if arms else "-",
        r.verdict or "-",
    )


def status_detail(r: RolloutStatus) -> str:
    """Everything about one rollout, including each guardrail's bounds."""
    lines = [
        f"flag:        {r.flag}",
        f"rollout:     {r.rollout_id} (plan {r.plan})",
        f"phase:       {_phase(r)}",
        f"stage:       {_label(r) or '-'}, serving {percent_text(r.percent)}"
        f" (flag version {r.flag_version})",
        f"in stage:    {_duration(r.time_in_stage_s)}"
        f" (minimum {_duration(r.min_duration_s)},"
        f" {r.min_units_per_arm} units per arm)",
    ]
    if r.next_move:
        lines.append(f"next move:   {r.next_move.why}")
    if r.watch_until:
        lines.append(f"watch:       until {r.watch_until}, the holdback stays on control")
    if r.stale:
        lines.append("stale:       completed long ago; remove the flag from the code")
    if r.verdict:
        lines.append(f"gate:        {r.verdict}: {r.verdict_reason}")
    evidence = r.evidence
    for name, arm in evidence.get("arms", {}).items():
        lines.append(
            f"  {name:<10} units {arm['units']:>8}  exposures {arm['exposures']:>8}"
            f"  requests {arm['requests']:>8}  errors {arm['errors']:>6} ({_rate(arm)})"
        )
    if comparison := comparison_text(evidence):
        lines.append(f"  comparison: {comparison}")
    for metric, test in evidence.get("guardrails", {}).items():
        lines.append(f"  guardrail {metric}: {_bounds(metric, test, evidence.get('arms'))}")
    if srm := evidence.get("srm"):
        flagged = "MISMATCH" if srm["flagged"] else "ok"
        p = srm.get("sequential_p_value", srm["p_value"])
        lines.append(f"  sample ratio: chi2 {srm['chi2']:.3g}, sequential p {p:.3g} ({flagged})")
    return displayable("\n".join(lines))


def decision_line(message: Decision | Alert) -> str:
    """A decision or alert as one human-readable line."""
    when = _clock(message.ts)
    flag = message.flag or "-"
    if isinstance(message, Alert):
        severity = message.severity.upper()
        return displayable(f"{when}  {flag}  ALERT {severity} {message.kind}: {message.summary}")
    where = _where(message)
    moved = _moved(message.phase_before, message.phase_after)
    reason = f": {message.reason}" if message.reason else ""
    return displayable(f"{when}  {flag}  {message.action} {message.outcome}{where}{moved}{reason}")


def _moved(before: str | None, after: str | None) -> str:
    """The phase change a decision made: ", paused -> running", " (running)", ", now running"."""
    if not after:
        return ""
    if before == after:
        return f" ({after})"
    return f", {before} -> {after}" if before else f", now {after}"  # a start has no before


def outcome_line(decision: Decision) -> str:
    """What became of a command, for the operator who sent it."""
    action, flag = decision.action, decision.flag
    if decision.outcome == "rejected":
        return displayable(f"rejected: {action} {flag}: {decision.reason}")
    stage = decided_at(_where_fields(decision)).removeprefix("at ")
    where = f", {stage}" if stage else ""
    return displayable(f"{decision.outcome}: {action} {flag} -> {decision.phase_after}{where}")


def _where(decision: Decision) -> str:
    where = decided_at(_where_fields(decision))
    return f" {where}" if where else ""


def _where_fields(decision: Decision) -> dict[str, Any]:
    # The fields the shared wording reads a decision's stage from.
    return {"stage": decision.stage, "evidence": decision.evidence}


def _label(r: RolloutStatus) -> str | None:
    at_stage = r.at_stage.served() if r.at_stage is not None else None
    return label_of({"at_stage": at_stage, "stage": r.stage, "stages": r.stages})


def _phase(r: RolloutStatus) -> str:
    phase = f"paused ({r.pause_reason})" if r.pause_reason else r.phase
    if r.watch_until:
        return f"{phase} (watch)"
    return f"{phase} (stale)" if r.stale else phase


def _rate(arm: dict[str, Any]) -> str:
    requests = arm.get("requests") or 0
    return f"{100 * arm.get('errors', 0) / requests:.2f}%" if requests else "-"


def _bounds(metric: str, test: Any, arms: Any) -> str:
    if not isinstance(test, dict):
        return str(test)  # "insufficient data"
    verdict = "REGRESSED" if test.get("regressed") else "ok"
    tolerance = test.get("tolerance")
    limit = amount_text(metric, tolerance) if isinstance(tolerance, int | float) else "-"
    return f"{guardrail_text(metric, test, arms)}, tolerance {limit}, {verdict}"


def _duration(seconds: float) -> str:
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _clock(ts: int | datetime) -> str:
    return as_datetime(ts).astimezone().strftime("%H:%M:%S")
