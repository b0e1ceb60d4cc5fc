"""Why a rollout is not moving now, and when it may next move.

Operators ask two things of a rollout that stands still: why, and until
when. :func:`next_move` answers from the rollout's state (and the gate's
view, when there is one), in this order:

* scheduled: a pending start begins at ``scheduled_at``;
* held by a health trigger whose policy says ``hold``: only an operator
  resumes it; paused by an operator, or waiting for an approval;
* ready, waiting for a release window: when the next window opens (its
  wording, in the window's time zone, is the machine's ``window_wait``); or
  waiting while the error budget burns (``window_wait`` begins ``error_budget``),
  or while a flag it requires is not served to its audience (``window_wait``
  begins ``prerequisite``, :func:`prerequisite_wait`): no time can be told;
* the advisor held the stage: until when;
* in the watch after the last stage: until when;
* the stage's minimum duration not reached: how long is left, and when it ends; the minimum
  sample not reached (the gate's hold): no time can be told;
* time-boxed: when the flag turns off by itself.

None when the rollout moves as soon as its gate says so, or has ended.
Pure: the clock is an argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from controller.core.common import clock_text, countdown_text
from controller.core.rollouts.policy import PauseReason, Trigger
from controller.core.rollouts.rollout import Phase, Rollout, Verdict, VerdictKind
from controller.core.rollouts.windows import Window, next_opening
from controller.core.wire import (
    MAX_PREREQUISITE_DEPTH,
    FlagStatus,
    Prerequisite,
    parent_key,
)

ERROR_BUDGET = "error_budget"
"""How the reason a forward move waits on the plan's burn rate begins (``window_wait``)."""
_SERVES_CONTROL = frozenset({FlagStatus.INACTIVE, FlagStatus.ROLLED_BACK, FlagStatus.KILLED})
"""Statuses under which a flag serves every unit control (as its flag states say)."""
PREREQUISITE = "prerequisite"
"""How the reason a forward move waits on a flag it requires begins (``window_wait``)."""

_HELD_BY: dict[PauseReason, Trigger] = {
    PauseReason.GUARDRAIL: "guardrail_regression",
    PauseReason.SRM: "sample_ratio_mismatch",
    PauseReason.UNITS_IN_BOTH_ARMS: "units_in_both_arms",
    PauseReason.NO_TRAFFIC: "no_traffic",
    PauseReason.INCONCLUSIVE: "inconclusive",
    PauseReason.ADVISOR_UNAVAILABLE: "advisor_unavailable",
    PauseReason.BACKEND_DRIFT: "backend_drift",
}
"""The health trigger whose ``hold`` pauses with each reason (the inverse of the policy's)."""

_PAUSED: dict[PauseReason, str] = {
    PauseReason.OPERATOR: "paused by an operator; resumes only by an operator",
    PauseReason.AWAITING_APPROVAL: "awaiting an operator's approval to move on",
    PauseReason.ADVISOR_OBJECTION: "paused on the advisor's objection; an operator approves it",
    PauseReason.MONITOR: "held by a monitor (a deploy aborted); resumes only by an operator",
}


class NextMove(BaseModel):
    """Why a rollout is not moving, and when it may next move (null: no time can be told)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    why: str = Field(description="In words, e.g. ready, waiting for the window that opens ….")
    at: str | None = Field(default=None, description="ISO 8601; null when no time can be told.")


def next_move(
    rollout: Rollout,
    verdict: Verdict | None,
    now: datetime,
    team_windows: tuple[Window, ...] = (),
) -> NextMove | None:
    """Why ``rollout`` is not moving now and when it may; None when nothing holds it."""
    if rollout.phase is Phase.PENDING:
        at = rollout.scheduled_at
        return _move(f"scheduled: starts at {_iso(at)}" if at else "scheduled", at)
    if not rollout.phase.active:
        return None
    if rollout.phase is Phase.PAUSED:
        return _paused(rollout.pause_reason)
    if rollout.window_wait is not None:
        if rollout.window_wait.startswith((ERROR_BUDGET, PREREQUISITE)):
            return _move(rollout.window_wait, None)  # it opens with the service's health
        windows = rollout.plan.windows if rollout.plan.windows is not None else team_windows
        return _move(rollout.window_wait, next_opening(windows, now) if windows else None)
    return _running(rollout, verdict, now)


def _paused(reason: PauseReason | None) -> NextMove:
    trigger = _HELD_BY.get(reason) if reason is not None else None
    if trigger is not None:
        return _move(f"held by the policy on {trigger}; resumes only by an operator", None)
    if reason is not None and reason in _PAUSED:
        return _move(_PAUSED[reason], None)
    return _move("paused; resumes only by an operator", None)


def _running(rollout: Rollout, verdict: Verdict | None, now: datetime) -> NextMove | None:
    hold = rollout.advisor_hold_until
    if hold is not None and hold > now:
        return _move(f"the advisor held the stage until {_iso(hold)}", hold)
    if rollout.watch_until is not None and rollout.watch_until > now:
        return _move(
            f"watching the holdback until {_iso(rollout.watch_until)}", rollout.watch_until
        )
    stage = rollout.plan.stages[rollout.stage]
    ends = rollout.stage_started_at + stage.min_duration
    held = verdict is None or verdict.kind is VerdictKind.HOLD
    if ends > now and held:
        left = countdown_text((ends - now).total_seconds())  # the time is in ``at``
        return _move(f"minimum stage time {stage.min_duration}: {left} left", ends)
    if verdict is not None and verdict.kind is VerdictKind.HOLD:
        return _gate_hold(verdict)
    box = rollout.plan.time_box
    if box is not None and box.ends_at > now:
        return _move(f"time-boxed: the flag turns off at {_iso(box.ends_at)}", box.ends_at)
    return None


def _gate_hold(verdict: Verdict) -> NextMove:
    """The gate holds the stage: on too few units, or on a trigger the policy warns about."""
    if verdict.applied is not None:
        return _move(f"the policy warns on {verdict.applied.trigger}: {verdict.reason}", None)
    return _move(f"the gate holds: {verdict.reason}", None)


def _move(why: str, at: datetime | None) -> NextMove:
    return NextMove(why=why[:500], at=at.isoformat() if at is not None else None)


def _iso(moment: datetime | None) -> str:
    """A time in the words of ``why``, as people read it (``at`` keeps it ISO 8601)."""
    return clock_text(moment) if moment is not None else "?"


def prerequisite_wait(child: Rollout, held: Mapping[str, Rollout]) -> str | None:
    """Why forward moves of ``child`` wait on the flags it requires; None when none does.

    A prerequisite is *served to the child's audience* when every unit the child may serve
    gets one of the listed variants from the parent: a parent killed, unknown (not in
    ``held``, every rollout held by stored key), or failing to serve a prerequisite of its
    own is not; one rolled back, aborted or not started serves control to everyone; one
    at 100% (completed, or an untargeted last stage) treatment to everyone; one between
    (a stage of 10%, a watch's holdback) or targeted by audience rules, both variants. So
    ``[treatment]`` is served by a parent at 100% only, ``[control]`` by one serving
    nobody treatment, and ``[treatment, control]`` by any parent alive.
    """
    problems = _unserved(child, held, {child.flag}, 0)
    if not problems:
        return None
    return f"{PREREQUISITE}: {'; '.join(problems)}"[:500]


def _unserved(child: Rollout, held: Mapping[str, Rollout], seen: set[str], depth: int) -> list[str]:
    """The prerequisites of ``child`` not served to its audience, each in words."""
    problems = []
    for needed in child.plan.requires or ():
        key = parent_key(child.flag, needed.flag)
        why = _parent_problem(needed, key, held, seen, depth)
        if why is not None:
            problems.append(f"{needed.flag} {why}")
    return problems


def _parent_problem(
    needed: Prerequisite, key: str, held: Mapping[str, Rollout], seen: set[str], depth: int
) -> str | None:
    parent = held.get(key)
    if parent is None:
        return "is unknown (no rollout of it here)"
    if parent.flag_status is FlagStatus.KILLED:
        return "is killed"
    if key in seen or depth + 1 >= MAX_PREREQUISITE_DEPTH:
        return "is in a cycle or a chain of prerequisites too deep"
    status = parent.flag_status
    if status not in _SERVES_CONTROL and _unserved(parent, held, seen | {key}, depth + 1):
        return "does not serve its own prerequisites to everyone"
    served = _variants(parent)
    if served <= set(needed.variants):
        return None
    return f"serves {_share(parent)}, not only {' or '.join(needed.variants)}"


def _variants(parent: Rollout) -> set[str]:
    """The variants ``parent`` may serve a unit."""
    if parent.flag_status in _SERVES_CONTROL:
        return {"control"}
    if parent.plan.targeted:
        return {"treatment", "control"}
    percent = parent.percent
    if percent >= 100.0:
        return {"treatment"}
    return {"control"} if percent <= 0.0 else {"treatment", "control"}


def _share(parent: Rollout) -> str:
    if parent.plan.targeted:
        return f"treatment by audience rules at stage {parent.stage}"
    return f"treatment to {parent.percent:g}% of units"
