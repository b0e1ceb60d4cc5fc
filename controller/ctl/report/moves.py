"""What held a rollout back, for its report: the windows it waited for, the triggers that fired.

Pure, from the rollout's decisions:

* a ``wait`` decision begins a wait for a release window; the next decision
  that moved or stopped the rollout ends it (a policy's ``warn`` leaves the
  rollout where it was, so it does not); a wait with no such decision after
  it is still going on;
* a decision whose evidence carries ``policy`` (a health trigger's hold,
  warn or rollback, a stage past its ``max_duration``) is a trigger fired,
  with the trigger, the action and the policy entry that chose it.

The evidence is read part by part (:mod:`controller.core.reading.evidence_view`): a
part of the wrong shape is a blank, never an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from controller.core.common import as_datetime
from controller.core.reading import PolicyEntry, ReadDecision

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


def windows_waited(decisions: Sequence[ReadDecision]) -> list[WindowWait]:
    """Each wait for a window among ``decisions`` (oldest first), with when it ended."""
    waits: list[WindowWait] = []
    for index, waited in enumerate(decisions):
        decision, read = waited.decision, waited.evidence
        if decision.action != WAIT:
            continue
        later = (d.decision for d in decisions[index + 1 :])
        ended = next((d for d in later if d.action not in _STAYS), None)
        waits.append(
            WindowWait(
                stage=waited.label() or "-",
                since=iso(decision.ts),
                until=iso(ended.ts) if ended is not None else None,
                reason=decision.reason,
                opens_at=read.window.opens_at if read.window is not None else None,
            )
        )
    return waits


def triggers_fired(decisions: Sequence[ReadDecision]) -> list[TriggerFired]:
    """Each decision a health trigger stood behind, with the policy's action and entry."""
    fired = []
    for fire in decisions:
        decision, policy = fire.decision, fire.evidence.policy
        if policy is None or policy == PolicyEntry():
            continue
        fired.append(
            TriggerFired(
                ts=iso(decision.ts),
                stage=fire.label() or "-",
                trigger=policy.trigger[:64] or "-",
                action=policy.action[:64] or "-",
                entry=policy.policy_entry[:128] or "-",
                outcome=decision.outcome,
                reason=decision.reason,
            )
        )
    return fired


def iso(ts: float | datetime) -> str:
    """A message's time as ISO 8601."""
    return as_datetime(ts).isoformat()
