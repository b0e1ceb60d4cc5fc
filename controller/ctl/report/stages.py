"""A report's stages: walked from the rollout's decisions, each with the numbers that ended it.

Pure. Each stage's numbers are those of the gate decision that ended it,
copied from that decision's evidence as they are, so the report says exactly
what the controller decided on; a stage still running shows the gate's
current view (the status's evidence). The evidence is read part by part
(:class:`~controller.core.reading.evidence_view.Evidence`): an odd part costs a blank
cell, never the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from controller.core.common import clock_text
from controller.core.reading import (
    ArmLatency,
    ArmTally,
    Evidence,
    GuardrailTest,
    ReadDecision,
    RolloutStatus,
    SrmCheck,
    compares,
    comparison_text,
    dominant_text,
    failure_text,
    guardrail_state,
    position_label,
    source_lines,
    widening_text,
)
from controller.core.wire import Decision, GateEvidence, gate_of
from controller.core.wire import GuardrailTest as WireTest
from controller.ctl.report.model import (
    Arm,
    GuardrailResult,
    SampleRatio,
    StageReport,
)
from controller.ctl.report.moves import iso

MAX_GUARDRAILS = 20
TERMINAL = ("completed", "rolled_back", "aborted", "killed")
ARMS = ("treatment", "control")


def stages(
    status: RolloutStatus, decisions: Sequence[ReadDecision], now: datetime
) -> list[StageReport]:
    """The stages the decisions walked through, each ended by the decision that moved on."""
    walked: list[StageReport] = []
    current: StageReport | None = None
    for each in decisions:
        decision, read = each.decision, each.evidence
        if decision.outcome not in ("applied", "recorded"):
            continue
        index = _index(decision.stage)
        at = _index(read.at_stage.index) if read.at_stage is not None else None
        if current is None:
            current = _open(at or index or 0, decision, read, status, watch=False)
            walked.append(current)
        if read.gated and (at is None or at == current.index):
            source = f"the {decision.action[:64]} decision at {clock_text(iso(decision.ts))}"
            _take_evidence(current, read, source, gate_of(decision.evidence))
            current.sources = source_lines(gate_of(decision.evidence))
        moved = index is not None and index != current.index
        ended = decision.phase_after in TERMINAL
        if ended or moved or decision.action == "watch":
            _close(current, decision)
            if ended:
                current = None
                continue
            current = _open(index or 0, decision, read, status, watch=decision.action == "watch")
            walked.append(current)
    if current is not None:
        _live(current, status, now)
    return walked


def _open(
    index: int, decision: Decision, read: Evidence, status: RolloutStatus, *, watch: bool
) -> StageReport:
    percent = _percent_of(index, read, status)
    label = position_label(index, status.stages, percent) or f"stage {index + 1}"
    return StageReport(
        index=index,
        label=f"{label}, watch" if watch else label,
        percent=percent,
        started_at=iso(decision.ts),
        watch=watch,
    )


def _close(stage: StageReport, decision: Decision) -> None:
    stage.ended_at = iso(decision.ts)
    stage.duration_s = _seconds_between(stage.started_at, stage.ended_at)
    stage.outcome = decision.action[:64]


def _live(stage: StageReport, status: RolloutStatus, now: datetime) -> None:
    """The stage still running: its duration so far and the gate's current view."""
    stage.duration_s = _seconds_between(stage.started_at, now.isoformat())
    stage.outcome = status.phase or "running"
    if status.stage == stage.index and status.evidence:
        _take_evidence(
            stage,
            Evidence.read(status.evidence),
            "the gate's current view (not decided yet)",
            status.evidence,
        )
        stage.sources = source_lines(status.evidence)


def _take_evidence(stage: StageReport, read: Evidence, source: str, gate: GateEvidence) -> None:
    """The stage's numbers from one evidence: ``read`` part by part, and ``gate`` (the same
    evidence, typed) for what only the typed tests say (their widening on units)."""
    comparison = comparison_text(gate)
    if read.arms is not None:
        latency = read.latency or {}
        stage.arms = [_arm(name, read.arms.get(name), latency.get(name)) for name in ARMS]
    if read.guardrails is not None:
        items = list(read.guardrails.items())[:MAX_GUARDRAILS]
        tested = gate.guardrails or {}
        compared = compares(gate.comparison)
        stage.guardrails = [
            _guardrail(metric[:96], test, tested.get(metric), compared) for metric, test in items
        ]
    stage.srm = _srm(read.srm) if read.srm is not None else None
    stage.failures = [failure_text(seen) for seen in gate.failures or []]
    stage.comparison = comparison
    stage.evidence_from = source
    if read.audience is not None:
        stage.audience = read.audience.text()
        stage.compared = "absolute limits" if comparison else "a concurrent control"


def _arm(name: str, counts: ArmTally | None, latency: ArmLatency | None) -> Arm:
    c, q = counts or ArmTally(), latency or ArmLatency()
    named = dict(c.named_conversions or {})
    return Arm(
        name, c.units, c.exposures, c.requests, c.errors, c.conversions, q.p50, q.p95, q.p99, named
    )


def _guardrail(
    metric: str, test: GuardrailTest | None, typed: object, compared: bool = True
) -> GuardrailResult:
    said = guardrail_state(test, compared=compared)  # in the words of every surface
    result, why = said.state.value, said.why
    if test is None:
        return GuardrailResult(metric, result, why=why)
    # Why the interval is as wide as it is, and the unit that decides it where one does.
    notes = (widening_text(typed), dominant_text(typed)) if isinstance(typed, WireTest) else ()
    widening = "; ".join(note for note in notes if note)
    return GuardrailResult(
        metric,
        result,
        test.delta,
        test.lower,
        test.upper,
        test.tolerance,
        test.p_value,
        widening,
        direction=test.direction,
        why=why,
    )


def _srm(srm: SrmCheck) -> SampleRatio:
    return SampleRatio(
        srm.observed_treatment,
        srm.observed_control,
        srm.expected_treatment,
        srm.sequential_p_value,
        srm.flagged,
    )


def _percent_of(index: int, read: Evidence, status: RolloutStatus) -> float | None:
    """The planned percent of stage ``index``: from the plan's ladder, else a position."""
    if 0 <= index < len(status.stage_percents):
        return status.stage_percents[index]
    if read.at_stage is not None and read.at_stage.index == index:
        return read.at_stage.percent
    if status.at_stage is not None and status.at_stage.index == index:
        return status.at_stage.percent
    return None


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if start is None or end is None:
        return None
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (ValueError, TypeError):
        return None
    return max(seconds, 0.0)


def _index(value: int | None) -> int | None:
    return value if value is not None and 0 <= value < 10_000 else None
