"""A rollout's canary report, assembled from what the controller serves and publishes.

Pure: :func:`build` takes the rollout's status (``/rollouts/{flag}``, a
:class:`~controller.core.reading.views.RolloutStatus`), its decisions (from
``rollout.decisions``, each a :class:`~controller.core.wire.messages.Decision`)
and, when the controller serves it, its gate history (``/rollouts/{flag}/history``,
a :class:`~controller.core.reading.served_history.RolloutHistory`), and returns the report's
data (:mod:`controller.ctl.report.model`). The stages and their numbers are
:mod:`controller.ctl.report.stages`'; the gate history becomes one figure per
guardrail over the whole rollout (:func:`controller.console.figures.figures`:
the console's own charts, with the stages and decisions marked).

What comes over the network is read as a client reads it (:func:`read`): a
message that breaks the decision contract is left out and counted in a note,
a history point that breaks the served one is left out of its chart, and an
odd part of a valid decision's evidence costs a blank cell, never the report.
:mod:`controller.ctl.report.render` turns the data into Markdown or HTML.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from controller.console.figures import Figure, figures
from controller.core.common import iso_or_none
from controller.core.reading import (
    Evidence,
    ReadDecision,
    RolloutHistory,
    RolloutStatus,
    advice_text,
    evidence,
    verdict_line,
)
from controller.core.wire import Decision, decision_or_alert
from controller.ctl.report.model import DecisionRow, Report
from controller.ctl.report.moves import iso, triggers_fired, windows_waited
from controller.ctl.report.stages import stages

MAX_DECISIONS = 2_000
"""The most decisions a report lists; a longer rollout's report says it was cut."""
NO_HISTORY = "this controller serves no gate history: no charts over time"
UNREADABLE_HISTORY = "the gate history was unreadable and is left out"


@dataclass(frozen=True, slots=True)
class Inputs:
    """What a report is built from, read into the contracts' models."""

    status: RolloutStatus
    decisions: Sequence[Decision]
    history: RolloutHistory | None
    notes: tuple[str, ...] = ()
    """What reading left out: damaged decisions, an unreadable or absent history."""


def read(status: RolloutStatus, messages: Iterable[object], history: object | None) -> Inputs:
    """The report's inputs from the decisions topic's messages (parsed JSON, any value) and the
    served history (None: the controller serves none)."""
    decisions: list[Decision] = []
    damaged = 0
    for message in messages:
        read_back = decision_or_alert(message)
        if isinstance(read_back, Decision):
            decisions.append(read_back)
        else:
            damaged += 1
    notes = []
    if damaged:
        notes.append(
            f"{damaged} message(s) on the decisions topic broke the decision contract"
            " and are left out"
        )
    served = RolloutHistory.read(history) if history is not None else None
    if history is None:
        notes.append(NO_HISTORY)
    elif served is None:
        notes.append(UNREADABLE_HISTORY)
    return Inputs(status, decisions, served, tuple(notes))


def build(inputs: Inputs, now: datetime) -> Report:
    """The report of the rollout ``inputs.status`` describes, from its decisions and history."""
    status = inputs.status
    mine = [
        d for d in inputs.decisions if d.flag == status.flag and d.rollout_id == status.rollout_id
    ]
    report = Report(
        flag=status.flag,
        rollout_id=status.rollout_id,
        plan=status.plan,
        phase=status.phase,
        percent=status.percent,
        started_at=iso_or_none(status.started_at),
        generated_at=now.isoformat(),
        notes=list(inputs.notes),
    )
    if len(mine) > MAX_DECISIONS:
        report.notes.append(f"only the last {MAX_DECISIONS} of {len(mine)} decisions are shown")
        mine = mine[-MAX_DECISIONS:]
    reads = [ReadDecision.of(d) for d in mine]  # each evidence read once
    report.stages = stages(status, reads, now)
    report.decisions = [_row(r) for r in reads]
    report.waits, report.triggers = windows_waited(reads), triggers_fired(reads)
    if not mine:
        report.notes.append("no decisions of this rollout were found on the decisions topic")
    report.charts = _charts(report, inputs.history, mine)
    report.verdict = verdict_line(status, mine)
    return report


def from_served(
    status: Mapping[str, object], messages: Iterable[object], history: object | None, now: datetime
) -> Report:
    """:func:`build` from the JSON the controller serves and the decisions topic holds."""
    return build(read(RolloutStatus.model_validate(status), messages, history), now)


# -- decisions ---------------------------------------------------------------------------


def _row(read: ReadDecision) -> DecisionRow:
    decision, advice = read.decision, read.evidence.advisor
    return DecisionRow(
        ts=iso(decision.ts),
        stage=read.label() or "-",
        action=decision.action[:64],
        outcome=decision.outcome,
        by=who(decision, read.evidence),
        reason=decision.reason,
        advisor=advice_text(advice) if advice is not None else None,
    )


def who(decision: Decision, read: Evidence | None = None) -> str:
    """Who made a decision: an operator's key, the engine's statistics, a monitor, the advisor."""
    read_back = read or evidence(decision)
    if decision.kind == "command":
        actor, key = read_back.actor[:64], read_back.key_id[:64]
        if not actor and not key:
            return "operator"
        return f"operator {actor or '?'} (key {key or '?'})"
    if decision.kind == "monitor":
        monitor = read_back.monitor[:64]
        return f"monitor {monitor}" if monitor else "monitor"
    if decision.kind == "advisor":
        return "advisor"
    return "engine (gate statistics)" if decision.kind == "gate" else "engine"


# -- history -----------------------------------------------------------------------------


def _charts(
    report: Report, history: RolloutHistory | None, decisions: list[Decision]
) -> list[Figure]:
    """Each guardrail's figure from the served history; a note says why when there are none."""
    if history is None:
        return []  # reading it noted why
    if history.rollout_id != report.rollout_id:
        report.notes.append("the gate history served is of another rollout and is left out")
        return []
    drawn = figures(history, decisions)  # at most so many figures of so many points
    if not any(figure.points for figure in drawn):
        report.notes.append("the gate history holds no guardrail test yet: no charts over time")
    return drawn
