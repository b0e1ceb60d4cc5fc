"""The one line a rollout's page opens with: where it ended or stands, and why.

"Rolled back at stage 2/4 (20%): error rate +3.6 pp [+0.5, +6.7] (+72%), ..."
comes before any evidence on the console's rollout page and in a report, so a
reader has the verdict before the tables. The reason is the decision's own,
already written in :mod:`controller.core.wording`'s number convention. Pure and
defensive: the status and decisions may come over the network (a report).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from controller.core.wording import AT_STAGE, label_of

MAX_REASON_CHARS = 300
ENDED = {
    "rolled_back": ("Rolled back", "rollback"),
    "killed": ("Killed", "kill"),
    "aborted": ("Aborted", "abort"),
}
"""A finished phase in words, and the action of the decision that finished it."""


def verdict_line(status: Mapping[str, Any], decisions: Iterable[Mapping[str, Any]] = ()) -> str:
    """The rollout's verdict in one line, from its status and its decisions (oldest first)."""
    phase = str(status.get("phase", ""))[:32]
    mine = [d for d in decisions if _same_rollout(d, status)]
    if phase in ENDED:
        said, action = ENDED[phase]
        ending = _last(mine, action)
        where = _where_taken(ending) or label_of(dict(status))
        at = f" at {where}" if where else ""
        why = _reason(ending)
        return f"{said}{at}: {why}" if why else f"{said}{at}"
    where = label_of(dict(status))
    at = f" at {where}" if where else ""
    if phase == "completed":
        return (
            f"Completed: every stage passed{', in its watch' if status.get('watch_until') else ''}"
        )
    if phase == "paused":
        reason = str(status.get("pause_reason") or "operator")[:40].replace("_", " ")
        why = _reason(_last(mine, None))
        return f"Paused{at} ({reason}){': ' + why if why else ''}"
    if phase == "running":
        verdict = status.get("verdict")
        gate = f"; the gate says {str(verdict)[:20]}" if verdict else ""
        why = str(status.get("verdict_reason") or "")[:MAX_REASON_CHARS]
        return f"Running{at}{gate}{': ' + why if verdict and why else ''}"
    return f"{phase.replace('_', ' ').capitalize() or 'Unknown'}{at}"


def _where_taken(decision: Mapping[str, Any] | None) -> str | None:
    """The stage a decision names where it was taken (its evidence's ``at_stage``), if it does."""
    evidence = decision.get("evidence") if decision else None
    if not isinstance(evidence, Mapping) or not isinstance(evidence.get(AT_STAGE), Mapping):
        return None
    return label_of({AT_STAGE: evidence[AT_STAGE]})


def _same_rollout(decision: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    rollout = status.get("rollout_id")
    return decision.get("type", "decision") == "decision" and (
        rollout is None or decision.get("rollout_id") in (None, rollout)
    )


def _last(decisions: list[Mapping[str, Any]], action: str | None) -> Mapping[str, Any] | None:
    """The last applied decision, of ``action`` when one is named."""
    applied = [d for d in decisions if d.get("outcome") == "applied"]
    return next((d for d in reversed(applied) if action in (None, d.get("action"))), None)


def _reason(decision: Mapping[str, Any] | None) -> str:
    reason = decision.get("reason") if decision else None
    return " ".join(str(reason).split())[:MAX_REASON_CHARS] if reason else ""
