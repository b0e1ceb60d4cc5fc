"""The one line a rollout's page opens with: where it ended or stands, and why.

"Rolled back at stage 2/4 (20%): error rate +3.6 pp [+0.5, +6.7] (+72%), ..."
comes before any evidence on the console's rollout page and in a report, so a
reader has the verdict before the tables. The reason is the decision's own,
already written in :mod:`controller.core.reading.wording`'s number convention; a
running rollout's line also names each guardrail regressed or being watched, in
the words every surface gives its state
(:mod:`~controller.core.reading.guardrail_state`), so the page never says less
than the list. Pure:
from the status as served (:class:`~controller.core.reading.views.RolloutView`) and the
decisions as published.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controller.core.reading.evidence_view import evidence
from controller.core.reading.guardrail_state import (
    State,
    compares,
    guardrail_state,
    state_text,
)
from controller.core.reading.views import RolloutView
from controller.core.wire import Decision, GuardrailTest

MAX_REASON_CHARS = 300
ENDED = {
    "rolled_back": ("Rolled back", "rollback"),
    "killed": ("Killed", "kill"),
    "aborted": ("Aborted", "abort"),
}
"""A finished phase in words, and the action of the decision that finished it."""


def verdict_line(status: RolloutView, decisions: Iterable[Decision] = ()) -> str:
    """The rollout's verdict in one line, from its status and its decisions (oldest first)."""
    phase = status.phase[:32]
    mine = [d for d in decisions if d.rollout_id in (None, status.rollout_id)]
    if phase in ENDED:
        said, action = ENDED[phase]
        ending = _last(mine, action)
        where = _where_taken(ending) or status.label()
        at = f" at {where}" if where else ""
        why = _reason(ending)
        return f"{said}{at}: {why}" if why else f"{said}{at}"
    where = status.label()
    at = f" at {where}" if where else ""
    if phase == "completed":
        return f"Completed: every stage passed{', in its watch' if status.watch_until else ''}"
    if phase == "paused":
        reason = (status.pause_reason or "operator")[:40].replace("_", " ")
        why = _reason(_last(mine, None))
        return f"Paused{at} ({reason}){': ' + why if why else ''}"
    if phase == "running":
        verdict = status.verdict
        gate = f"; the gate says {verdict[:20]}" if verdict else ""
        why = (status.verdict_reason or "")[:MAX_REASON_CHARS]
        tests = status.evidence.guardrails if compares(status.evidence.comparison) else None
        said = "".join(f"; {text}" for text in unsettled(tests))
        return f"Running{at}{gate}{': ' + why if verdict and why else ''}{said}"
    return f"{phase.replace('_', ' ').capitalize() or 'Unknown'}{at}"


def _where_taken(decision: Decision | None) -> str | None:
    """The stage a decision names where it was taken (its evidence's ``at_stage``), if it does."""
    position = evidence(decision).at_stage if decision is not None else None
    return position.label() if position is not None else None


def _last(decisions: list[Decision], action: str | None) -> Decision | None:
    """The last applied decision, of ``action`` when one is named."""
    applied = [d for d in decisions if d.outcome == "applied"]
    return next((d for d in reversed(applied) if action in (None, d.action)), None)


def _reason(decision: Decision | None) -> str:
    return " ".join(decision.reason.split())[:MAX_REASON_CHARS] if decision else ""


ALARMING = (State.REGRESSED, State.WATCHING)
"""The states a running rollout's verdict line names: the gate's reason may not."""


def unsettled(tests: Mapping[str, GuardrailTest | str] | None) -> list[str]:
    """Each guardrail of a served evidence that is regressed or being watched, in words
    (:func:`~controller.core.reading.guardrail_state.state_text`)."""
    named = (tests or {}).items()
    return [
        state_text(metric, test)
        for metric, test in named
        if isinstance(test, GuardrailTest) and guardrail_state(test).state in ALARMING
    ]
