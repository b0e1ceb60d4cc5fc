"""Text views for operators: the status table, one rollout in detail, decision lines.

Pure functions of what the controller serves (``/rollouts``, read into
:class:`~controller.core.reading.views.RolloutStatus`) and publishes (a
:class:`~controller.core.wire.messages.Decision` or an
:class:`~controller.core.wire.messages.Alert`), so ``rolloutctl`` output is
testable without a terminal. A gate's ``evidence`` stays an open object and is
read defensively, as every version served it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from controller.core.common import as_datetime, clock_text, displayable
from controller.core.reading import (
    DEFAULT_EFFECT,
    ArmLatency,
    ArmTally,
    Evidence,
    GuardrailTest,
    RolloutStatus,
    budget_text,
    compares,
    dominant_text,
    failure_text,
    guardrail_state,
    harm_edge,
    holdout_line,
    limit_text,
    limits_comparison,
    percent_text,
    quantity_text,
    ratio_word,
    running_lines,
    source_lines,
    where_decided,
    widening_text,
)
from controller.core.rollouts import COMPLETION_SERVES
from controller.core.wire import Alert, Decision, GateEvidence
from controller.core.wire import GuardrailTest as WireTest

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
    # Below the table, for each rollout that stands still: why, and until when; then what
    # its stage still needs, in one line.
    still = [displayable(line) for r in rollouts for line in _still(r)]
    return "\n".join([table, "", *still]) if still else table


def _still(r: RolloutStatus) -> list[str]:
    said = [r.next_move.why] if r.next_move else []
    needs = _unsaid(r.needs.lines if r.needs is not None else [], [*said])
    return [
        *(f"{r.flag}: {why}" for why in said),
        *([f"{r.flag} still needs: {'; '.join(needs)}"] if needs else []),
    ]


def _unsaid(sentences: Sequence[str | None], said: list[str]) -> list[str]:
    """Of ``sentences``, in order, each that no sentence in ``said`` already says, once:
    a stage that waits on one thing has it in its next move, its needs, the gate's reason
    and its evidence alike. Each kept is added to ``said``."""
    kept = []
    for sentence in sentences:
        if sentence and not any(sentence in earlier for earlier in said):
            kept.append(sentence)
            said.append(sentence)
    return kept


def _row(r: RolloutStatus) -> tuple[str, ...]:
    arms = Evidence.read(r.evidence).arms or {}
    t, c = arms.get("treatment") or ArmTally(), arms.get("control") or ArmTally()
    return (
        r.flag,
        _phase(r),
        _label(r) or "-",
        percent_text(r.percent),
        _duration(r.time_in_stage_s) if r.verdict else "-",
        f"{_n(t.units)}/{_n(c.units)}" if arms else "-",
        f"{_rate(t)}/{_rate(c)}" if arms else "-",
        r.verdict or "-",
    )


def status_detail(r: RolloutStatus, *, effect: float = DEFAULT_EFFECT) -> str:
    """Everything about one rollout, including each guardrail's bounds and what the running
    stage can detect (and how much longer it needs for a regression of ``effect``)."""
    lines = [
        f"flag:        {r.flag}",
        f"rollout:     {r.rollout_id} (plan {r.plan})",
        f"phase:       {_phase(r)}",
        f"stage:       {_stage_served(r)} (flag version {r.flag_version})",
        f"in stage:    {_duration(r.time_in_stage_s)}"
        f" (minimum {_duration(r.min_duration_s)},"
        f" {r.min_units_per_arm} units per arm)",
    ]
    if r.values is not None:
        lines.append(f"values:      {r.values.text()}")
    told = [r.next_move.why] if r.next_move else []  # each sentence once, first where due
    lines += [f"next move:   {why}" for why in told]
    lines += _needs_lines(r, told)
    if r.watch_until:
        until = clock_text(r.watch_until)
        lines.append(f"watch:       until {until}, the holdback stays on control")
    if r.stale:
        lines.append("stale:       completed long ago; remove the flag from the code")
    if r.verdict:
        reason = _unsaid([r.verdict_reason], told)  # said above: the verdict alone
        lines.append(f"gate:        {r.verdict}" + "".join(f": {why}" for why in reason))
    elif r.verdict_reason:  # finished: the decision that ended it
        when = f" at {clock_text(r.ended_at)}" if r.ended_at else ""
        lines.append(f"ended:       {r.phase}{when}: {r.verdict_reason}")
    evidence = Evidence.read(r.evidence)
    lines += _completeness_lines(evidence, told)
    if budget := budget_text(r.evidence):
        lines.append(f"budget:      {budget}")
    if (ring := evidence.audience) is not None:
        lines.append(f"audience:    {ring.text()}")
    arms = evidence.arms or {}
    for name, arm in arms.items():
        a = arm or ArmTally()
        lines.append(
            f"  {name:<10} units {_n(a.units):>8}  exposures {_n(a.exposures):>8}"
            f"  requests {_n(a.requests):>8}  errors {_n(a.errors):>6} ({_rate(a)})"
        )
    lines += _latency_lines(evidence)
    control = arms.get("control")
    for metric, test in (evidence.guardrails or {}).items():
        baseline = control.rate(metric) if control is not None else None
        compared = compares(evidence.comparison)
        lines.append(f"  guardrail {metric}: {_bounds(metric, test, baseline, compared)}")
        lines += _widening_lines(r.evidence, metric)
    lines += [*_failure_lines(r.evidence), *(f"  power: {x}" for x in running_lines(r, effect))]
    if (srm := evidence.srm) is not None:
        # "no units yet" on 0 against 0: no ratio was checked
        said = ratio_word(srm.word(), r.holdout)
        flagged = said.upper() if srm.flagged else said
        p = srm.sequential_p_value if srm.sequential_p_value is not None else srm.p_value
        lines.append(f"  sample ratio: chi2 {_g(srm.chi2)}, sequential p {_g(p)} ({flagged})")
    lines += [f"  {holdout_line(r.holdout)}"] if r.holdout is not None else []
    if comparison := limits_comparison(r.evidence, r.limits_gated):
        lines.append(f"  comparison: {comparison}")
    lines += [f"  {line}" for line in source_lines(r.evidence)]
    return displayable("\n".join(lines))


def _needs_lines(r: RolloutStatus, said: list[str]) -> list[str]:
    """What the running stage still needs before the gate lets it advance, one need a line,
    each not ``said`` above."""
    needs = _unsaid(r.needs.lines if r.needs is not None else [], said)
    return [f"{'still needs:' if i == 0 else '':<13}{need}" for i, need in enumerate(needs)]


def _widening_lines(gate: GateEvidence, metric: str) -> list[str]:
    """Under a guardrail's bounds, why its interval is as wide as it is, when there is a word
    to say: how much units widen it, or that it assumes independent requests; then the one
    bucket of units that carries most of its variance, when the evidence names one."""
    test = (gate.guardrails or {}).get(metric)
    if not isinstance(test, WireTest):
        return []
    return [f"    {said}" for said in (widening_text(test), dominant_text(test)) if said]


def _failure_lines(gate: GateEvidence) -> list[str]:
    """What broke, by fingerprint: the failures the evidence names, the most telling first."""
    named = gate.failures or []
    return [
        f"  {'what broke:' if i == 0 else '':<12}{failure_text(seen)}"
        for i, seen in enumerate(named)
    ]


def _completeness_lines(evidence: Evidence, said: list[str]) -> list[str]:
    """The partitions the stage waits for, unless ``said`` above, and those counted late,
    when any."""
    wait, late = evidence.incomplete, evidence.late
    waiting = _unsaid([wait.waiting if wait is not None else None], said)
    return [
        *(f"waiting:     {why}" for why in waiting),
        *([f"late:        {late.why}"] if late is not None else []),
    ]


def _latency_lines(evidence: Evidence) -> list[str]:
    """Each arm's own latency, one line per arm: what moved behind a latency guardrail's Δ."""
    latency = evidence.latency or {}
    named = [(arm, latency[arm]) for arm in ("treatment", "control") if arm in latency]
    return [
        f"{'latency:' if i == 0 else '':<13}{arm:<9} {(tally or ArmLatency()).text()}"
        for i, (arm, tally) in enumerate(named)
    ]


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


def outcome_line(decision: Decision, *, what: str | None = None, result: str = "") -> str:
    """What became of a command, for the operator who sent it.

    ``outcome: what -> result``, or ``rejected: what: reason``. ``what`` is the
    action and the flag unless given (``segment put beta``); ``result`` is,
    unless given, the phase a rollout is in after it and the stage. A decision
    with no rollout and no ``result`` (an app key, a segment) ends at ``what``.
    """
    what = what or f"{decision.action} {decision.flag}"
    if decision.outcome == "rejected":
        return displayable(f"rejected: {what}: {decision.reason}")
    if not result and decision.phase_after:
        stage = where_decided(decision).removeprefix("at ")
        result = decision.phase_after + (f", {stage}" if stage else "")
        if decision.phase_after == "completed":
            result = "completed" + (f" from {stage}" if stage else "") + f", {COMPLETION_SERVES}"
    return displayable(f"{decision.outcome}: {what}" + (f" -> {result}" if result else ""))


def _where(decision: Decision) -> str:
    where = where_decided(decision)
    return f" {where}" if where else ""


def _stage_served(r: RolloutStatus) -> str:
    """The stage and what is served; completion serves everyone, whatever the stage was."""
    if r.phase == "completed":
        return f"completed after {_label(r) or 'its last stage'}, {COMPLETION_SERVES}"
    return f"{_label(r) or '-'}, serving {percent_text(r.percent)}"


def _label(r: RolloutStatus) -> str | None:
    return r.label()


def _phase(r: RolloutStatus) -> str:
    phase = f"paused ({r.pause_reason})" if r.pause_reason else r.phase
    if r.watch_until:
        return f"{phase} (watch)"
    return f"{phase} (stale)" if r.stale else phase


def _rate(arm: ArmTally) -> str:
    requests = arm.requests or 0
    return f"{100 * (arm.errors or 0) / requests:.2f}%" if requests else "-"


def _bounds(
    metric: str, test: GuardrailTest | None, baseline: float | None, compared: bool = True
) -> str:
    """Δ and its interval, the tolerance in the same digits, and the guardrail's state."""
    state = guardrail_state(test, compared=compared).text
    if test is None:
        return state
    delta, lower, upper = (
        math.nan if v is None else v for v in (test.delta, test.lower, test.upper)
    )
    edge = harm_edge(test.tolerance, test.direction)
    shown = quantity_text(metric, delta, lower, upper, baseline, limit=edge)
    limit = "-" if edge is None else limit_text(metric, edge, delta, lower, upper)
    return f"{shown}, tolerance {limit}, {state}"


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _duration(seconds: float) -> str:
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _clock(ts: int | datetime) -> str:
    return as_datetime(ts).astimezone().strftime("%H:%M:%S")
