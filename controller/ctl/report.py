"""A rollout's canary report, assembled from what the controller serves and publishes.

Pure: :func:`build` takes the rollout's status (``/rollouts/{flag}``), its
decisions (from ``rollout.decisions``) and, when the controller serves it, its
gate history (``/rollouts/{flag}/history``), and returns the report's data.
Each stage's numbers are those of the gate decision that ended it, copied from
that decision's evidence as they are, so the report says exactly what the
controller decided on; a stage still running shows the gate's current view.
The gate history becomes one figure per guardrail over the whole rollout
(:func:`controller.console.figures.figures`: the console's own charts, with
the stages and decisions marked). Every field is read defensively: the inputs
come over the network, and an odd field costs a blank cell, never the report.
:mod:`controller.ctl.report_render` turns the data into Markdown or HTML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controller.console.figures import Figure, figures
from controller.core.briefing import parse_number
from controller.core.headline import verdict_line
from controller.core.limits import comparison_text
from controller.core.timestamps import iso_or_none
from controller.core.wording import AT_STAGE, advice_text, label_of, position_label
from controller.ctl.report_moves import TriggerFired, WindowWait, triggers_fired, windows_waited

MAX_DECISIONS = 2_000
"""The most decisions a report lists; a longer rollout's report says it was cut."""
MAX_GUARDRAILS = 20
TERMINAL = ("completed", "rolled_back", "aborted", "killed")
ARM_FIELDS = ("units", "exposures", "requests", "errors", "conversions")
GUARDRAIL_FIELDS = ("delta", "lower", "upper", "tolerance", "p_value")


@dataclass(frozen=True, slots=True)
class Arm:
    """One arm's counts in a stage, as the gate saw them."""

    name: str
    units: int | None
    exposures: int | None
    requests: int | None
    errors: int | None
    conversions: int | None


@dataclass(frozen=True, slots=True)
class GuardrailResult:
    """One guardrail's sequential test in a stage: delta (treatment - control) and its bound."""

    metric: str
    result: str
    """``regressed``, ``no regression shown`` or ``insufficient data``."""
    delta: float | None = None
    lower: float | None = None
    upper: float | None = None
    tolerance: float | None = None
    p_value: float | None = None


@dataclass(slots=True)
class StageReport:
    """One stage (or the watch after the last one): when, how it ended, what the gate saw."""

    index: int
    label: str
    percent: float | None
    started_at: str | None
    ended_at: str | None = None
    duration_s: float | None = None
    outcome: str = "running"
    evidence_from: str = ""
    """Which decision the numbers are from (``rollback at 10:04:05``), or the live view."""
    watch: bool = False
    arms: list[Arm] = field(default_factory=list)
    guardrails: list[GuardrailResult] = field(default_factory=list)
    srm: dict[str, Any] = field(default_factory=dict)
    comparison: str = ""
    """Without a concurrent control: that, and the absolute limits the stage was gated on."""


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """A decision, who made it, and what the advisor said alongside."""

    ts: str
    stage: str
    action: str
    outcome: str
    by: str
    reason: str
    advisor: str | None = None


@dataclass(slots=True)
class Report:
    """Everything a canary report shows, ready to render or to print as JSON."""

    flag: str
    rollout_id: str
    plan: str
    phase: str
    percent: float | None
    started_at: str | None
    generated_at: str
    stages: list[StageReport] = field(default_factory=list)
    decisions: list[DecisionRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    charts: list[Figure] = field(default_factory=list)
    """One per guardrail: its gate history over the whole rollout, when the controller has one."""
    verdict: str = ""
    """The rollout's verdict in one line, the first thing the report says."""
    narrative: str | None = None
    """A few sentences by the model, every number in them checked against the evidence."""
    narrated_by: str | None = None
    waits: list[WindowWait] = field(default_factory=list)
    """Each wait for a release window, from when to when (#28)."""
    triggers: list[TriggerFired] = field(default_factory=list)
    """Each health trigger that fired: its action and the policy entry that chose it (#28)."""


def build(
    status: dict[str, Any],
    decisions: list[dict[str, Any]],
    history: dict[str, Any] | None,
    now: datetime,
) -> Report:
    """The report of the rollout ``status`` describes, from its decisions and history."""
    rollout_id = _text(status.get("rollout_id"))
    mine = [
        d
        for d in decisions
        if d.get("type", "decision") == "decision"
        and d.get("flag") == status.get("flag")
        and d.get("rollout_id") == rollout_id
    ]
    report = Report(
        flag=_text(status.get("flag")),
        rollout_id=rollout_id,
        plan=_text(status.get("plan")),
        phase=_text(status.get("phase")),
        percent=parse_number(status.get("percent")),
        started_at=iso_or_none(status.get("started_at")),
        generated_at=now.isoformat(),
    )
    if len(mine) > MAX_DECISIONS:
        report.notes.append(f"only the last {MAX_DECISIONS} of {len(mine)} decisions are shown")
        mine = mine[-MAX_DECISIONS:]
    report.stages = _stages(status, mine, now)
    report.decisions = [_row(d) for d in mine]
    report.waits, report.triggers = windows_waited(mine), triggers_fired(mine)
    if not mine:
        report.notes.append("no decisions of this rollout were found on the decisions topic")
    report.charts = _charts(report, history, mine)
    report.verdict = verdict_line(status, mine)
    return report


# -- stages ------------------------------------------------------------------------------


def _stages(
    status: dict[str, Any], decisions: list[dict[str, Any]], now: datetime
) -> list[StageReport]:
    """The stages the decisions walked through, each ended by the decision that moved on."""
    stages: list[StageReport] = []
    current: StageReport | None = None
    for decision in decisions:
        if decision.get("outcome") not in ("applied", "recorded"):
            continue
        index = _index(decision.get("stage"))
        at = _at_stage(decision)
        if current is None:
            current = _open(at or index or 0, decision, status, watch=False)
            stages.append(current)
        if _has_gate_evidence(decision) and (at is None or at == current.index):
            source = f"the {_action(decision)} decision at {clock(_ts(decision))}"
            _take_evidence(current, decision["evidence"], source)
        action = _action(decision)
        moved = index is not None and index != current.index
        if decision.get("phase_after") in TERMINAL or moved or action == "watch":
            _close(current, decision)
            if decision.get("phase_after") in TERMINAL:
                current = None
                continue
            current = _open(index or 0, decision, status, watch=action == "watch")
            stages.append(current)
    if current is not None:
        _live(current, status, now)
    return stages


def _open(
    index: int, decision: dict[str, Any], status: dict[str, Any], *, watch: bool
) -> StageReport:
    percent = _percent_of(index, decision, status)
    label = position_label(index, status.get("stages"), percent) or f"stage {index + 1}"
    return StageReport(
        index=index,
        label=f"{label}, watch" if watch else label,
        percent=percent,
        started_at=iso_or_none(decision.get("ts")),
        watch=watch,
    )


def _close(stage: StageReport, decision: dict[str, Any]) -> None:
    stage.ended_at = iso_or_none(decision.get("ts"))
    stage.duration_s = _seconds_between(stage.started_at, stage.ended_at)
    stage.outcome = _action(decision)


def _live(stage: StageReport, status: dict[str, Any], now: datetime) -> None:
    """The stage still running: its duration so far and the gate's current view."""
    stage.duration_s = _seconds_between(stage.started_at, now.isoformat())
    stage.outcome = _text(status.get("phase")) or "running"
    evidence = status.get("evidence")
    if _index(status.get("stage")) == stage.index and isinstance(evidence, dict) and evidence:
        _take_evidence(stage, evidence, "the gate's current view (not decided yet)")


def _take_evidence(stage: StageReport, evidence: dict[str, Any], source: str) -> None:
    arms = evidence.get("arms")
    if isinstance(arms, dict):
        stage.arms = [_arm(name, arms.get(name)) for name in ("treatment", "control")]
    guardrails = evidence.get("guardrails")
    if isinstance(guardrails, dict):
        items = list(guardrails.items())[:MAX_GUARDRAILS]
        stage.guardrails = [_guardrail(str(m)[:64], r) for m, r in items]
    srm = evidence.get("srm")
    stage.srm = _srm(srm) if isinstance(srm, dict) else {}
    stage.comparison = comparison_text(evidence)
    stage.evidence_from = source


def _arm(name: str, counts: Any) -> Arm:
    data = counts if isinstance(counts, dict) else {}
    return Arm(name, *(_int(data.get(key)) for key in ARM_FIELDS))


def _guardrail(metric: str, test: Any) -> GuardrailResult:
    if not isinstance(test, dict):
        return GuardrailResult(metric, "insufficient data")
    result = "regressed" if test.get("regressed") is True else "no regression shown"
    values = (parse_number(test.get(key)) for key in GUARDRAIL_FIELDS)
    return GuardrailResult(metric, result, *values)


def _srm(srm: dict[str, Any]) -> dict[str, Any]:
    keys = ("observed_treatment", "observed_control", "expected_treatment", "sequential_p_value")
    picked: dict[str, Any] = {key: parse_number(srm.get(key)) for key in keys}
    picked["flagged"] = srm.get("flagged") is True
    return picked


def _has_gate_evidence(decision: dict[str, Any]) -> bool:
    evidence = decision.get("evidence")
    return isinstance(evidence, dict) and isinstance(evidence.get("arms"), dict)


def _percent_of(index: int, decision: dict[str, Any], status: dict[str, Any]) -> float | None:
    """The planned percent of stage ``index``: from the plan's ladder, else a position."""
    ladder = status.get("stage_percents")
    if isinstance(ladder, list) and 0 <= index < len(ladder):
        return parse_number(ladder[index])
    for position in (_position(decision), status.get(AT_STAGE)):
        if isinstance(position, dict) and position.get("index") == index:
            return parse_number(position.get("percent"))
    return None


# -- decisions ---------------------------------------------------------------------------


def _row(decision: dict[str, Any]) -> DecisionRow:
    evidence = decision.get("evidence")
    advice = evidence.get("advisor") if isinstance(evidence, dict) else None
    stage = label_of({"stage": decision.get("stage"), "evidence": evidence})
    return DecisionRow(
        ts=_ts(decision),
        stage=stage or "-",
        action=_action(decision),
        outcome=_text(decision.get("outcome")),
        by=who(decision),
        reason=_text(decision.get("reason"))[:500],
        advisor=advice_text(advice) if isinstance(advice, dict) else None,
    )


def who(decision: dict[str, Any]) -> str:
    """Who made a decision: an operator's key, the engine's statistics, a monitor, the advisor."""
    kind = decision.get("kind")
    evidence = decision.get("evidence")
    ev = evidence if isinstance(evidence, dict) else {}
    if kind == "command":
        actor, key = _text(ev.get("actor"))[:64], _text(ev.get("key_id"))[:64]
        if not actor and not key:
            return "operator"
        return f"operator {actor or '?'} (key {key or '?'})"
    if kind == "monitor":
        monitor = _text(ev.get("monitor"))[:64]
        return f"monitor {monitor}" if monitor else "monitor"
    if kind == "advisor":
        return "advisor"
    return "engine (gate statistics)" if kind == "gate" else "engine"


# -- history -----------------------------------------------------------------------------


def _charts(
    report: Report, history: dict[str, Any] | None, decisions: list[dict[str, Any]]
) -> list[Figure]:
    """Each guardrail's figure from the served history; a note says why when there are none."""
    if history is None:
        report.notes.append("this controller serves no gate history: no charts over time")
        return []
    stages = history.get("stages")
    if not isinstance(stages, list):
        report.notes.append("the gate history was unreadable and is left out")
        return []
    if history.get("rollout_id") not in (None, report.rollout_id):
        report.notes.append("the gate history served is of another rollout and is left out")
        return []
    drawn = figures(history, decisions)  # reads what it can, at most so many points
    if not any(figure.points for figure in drawn):
        report.notes.append("the gate history holds no guardrail test yet: no charts over time")
    return drawn


# -- reading -----------------------------------------------------------------------------


def _position(decision: dict[str, Any]) -> dict[str, Any] | None:
    evidence = decision.get("evidence")
    at = evidence.get(AT_STAGE) if isinstance(evidence, dict) else None
    return at if isinstance(at, dict) else None


def _at_stage(decision: dict[str, Any]) -> int | None:
    position = _position(decision)
    return _index(position.get("index")) if position else None


def _action(decision: dict[str, Any]) -> str:
    return _text(decision.get("action"))[:64]


def clock(iso: str | None) -> str:
    """An ISO time as people read it in a report: ``2026-11-22 21:24:12 UTC``."""
    if iso is None:
        return "-"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso[:40]
    zone = "UTC" if moment.utcoffset() == timedelta(0) else moment.strftime("%z")
    return f"{moment:%Y-%m-%d %H:%M:%S} {zone}".rstrip()


def _ts(decision: dict[str, Any]) -> str:
    return iso_or_none(decision.get("ts")) or "-"


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if start is None or end is None:
        return None
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (ValueError, TypeError):
        return None
    return max(seconds, 0.0)


def _index(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10_000
    return value if ok else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
