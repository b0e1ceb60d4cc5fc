"""What held a rollout back, for its report: the windows it waited for, the triggers that fired.

Pure, from the rollout's decisions as :mod:`controller.ctl.report` reads
them (#28):

* a ``wait`` decision begins a wait for a release window; the next decision
  that moved or stopped the rollout ends it (a policy's ``warn`` leaves the
  rollout where it was, so it does not); a wait with no such decision after
  it is still going on;
* a decision whose evidence carries ``policy`` (a health trigger's hold,
  warn or rollback, a stage past its ``max_duration``) is a trigger fired,
  with the trigger, the action and the policy entry that chose it.

Every field is read defensively, as the report reads all it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.core.timestamps import iso_or_none
from controller.core.wording import label_of

WAIT = "wait"
POLICY = "policy"
_STAYS = (WAIT, "warn")
"""Decisions that leave a waiting rollout waiting."""


@dataclass(frozen=True, slots=True)
class WindowWait:
    """A wait for a release window: from when, until when (None: still waiting), and why."""

    stage: str
    since: str | None
    until: str | None
    reason: str
    opens_at: str | None = None


@dataclass(frozen=True, slots=True)
class TriggerFired:
    """A health trigger that fired, what the plan's policy made of it, and why."""

    ts: str | None
    stage: str
    trigger: str
    action: str
    entry: str
    outcome: str
    reason: str


def windows_waited(decisions: list[dict[str, Any]]) -> list[WindowWait]:
    """Each wait for a window among ``decisions`` (oldest first), with when it ended."""
    waits: list[WindowWait] = []
    for index, decision in enumerate(decisions):
        if decision.get("action") != WAIT:
            continue
        ended = next((d for d in decisions[index + 1 :] if d.get("action") not in _STAYS), None)
        window = _dict(_dict(decision.get("evidence")).get("window"))
        waits.append(
            WindowWait(
                stage=_stage(decision),
                since=iso_or_none(decision.get("ts")),
                until=iso_or_none(ended.get("ts")) if ended is not None else None,
                reason=_text(decision.get("reason"))[:500],
                opens_at=iso_or_none(window.get("opens_at")),
            )
        )
    return waits


def triggers_fired(decisions: list[dict[str, Any]]) -> list[TriggerFired]:
    """Each decision a health trigger stood behind, with the policy's action and entry."""
    fired = []
    for decision in decisions:
        policy = _dict(_dict(decision.get("evidence")).get(POLICY))
        if not policy:
            continue
        fired.append(
            TriggerFired(
                ts=iso_or_none(decision.get("ts")),
                stage=_stage(decision),
                trigger=_text(policy.get("trigger"))[:64] or "-",
                action=_text(policy.get("action"))[:64] or "-",
                entry=_text(policy.get("policy_entry"))[:128] or "-",
                outcome=_text(decision.get("outcome"))[:64],
                reason=_text(decision.get("reason"))[:500],
            )
        )
    return fired


def _stage(decision: dict[str, Any]) -> str:
    return label_of({"stage": decision.get("stage"), "evidence": decision.get("evidence")}) or "-"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
