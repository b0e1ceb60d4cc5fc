"""Scheduled starts and time-boxed flags: when a rollout begins and when it ends.

A ``start`` with ``at`` in the future (or a plan whose ``time_box`` has a
``starts_at``) does not start the rollout: it records a *pending* one
(:attr:`~controller.core.rollouts.rollout.Phase.PENDING`) with its plan, rollout id and
salt, all chosen when the command was admitted, and a ``schedule`` decision.
Nothing is served until then. The first tick from ``scheduled_at`` starts it
exactly as the command would have, through the release windows like every
unattended forward move (outside them it waits, with one ``wait`` decision),
and records a ``start`` decision naming the schedule. ``abort`` cancels a
pending start and ``kill`` kills it; either way it never fires.

A plan's ``time_box.ends_at`` turns the flag off by itself: the first tick
from then aborts the rollout, whatever its phase (pending, running, paused or
completed), publishes the flag state (control for everyone) and records a
``time_box_end`` decision. Its phase is then final, so it happens once.

The bounds of both times are checked when the command is admitted
(:func:`refusal`, :func:`plan_refusal`). Pure: the clock is the input's ``now``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from controller.core.machine.transitions import Cause, Step, bump, decision, rejected
from controller.core.machine.waiting import forward
from controller.core.rollouts import (
    CommandInput,
    Phase,
    Plan,
    PublishFlagState,
    Rollout,
    TickInput,
)
from controller.core.wire import RolloutEvidence, ScheduleRecord, TimeBoxRecord

MAX_AHEAD = timedelta(days=366)
"""How far ahead a scheduled start or a time box's end may lie."""
SCHEDULE = "schedule"
"""The evidence key naming the schedule a start came from."""
TIME_BOX = "time_box"
"""The evidence key naming the time box that ended a flag."""
TIME_BOX_END = "time_box_end"
"""The decision of a flag turned off at the end of its time box."""


def refusal(at: datetime | None, *, start: bool, now: datetime, max_age: float) -> str | None:
    """Why a command's ``at`` may not be taken (only ``start`` has one; bounded), or None."""
    if at is None:
        return None
    if not start:
        return "only start takes at"
    if at > now + MAX_AHEAD:
        return f"at {at.isoformat()} is more than {MAX_AHEAD.days} days ahead"
    if at < now - timedelta(seconds=max_age):
        return f"at {at.isoformat()} is in the past"
    return None


def plan_refusal(plan: Plan, at: datetime | None, now: datetime) -> str | None:
    """Why a start's plan cannot keep its time box, or None."""
    box = plan.time_box
    if box is None:
        return None
    if at is not None and box.starts_at is not None and at != box.starts_at:
        return "at and the plan's time_box.starts_at name different times"
    begins = max(now, at or box.starts_at or now)
    if box.ends_at <= begins:
        return f"time_box.ends_at {box.ends_at.isoformat()} is not after the start"
    if max(box.ends_at, box.starts_at or now) > now + MAX_AHEAD:
        return f"time_box: more than {MAX_AHEAD.days} days ahead"
    return None


def start_time(cmd: CommandInput) -> datetime | None:
    """When a start begins: the command's ``at``, else its plan's ``time_box.starts_at``."""
    box = cmd.plan.time_box if cmd.plan is not None else None
    return cmd.at or (box.starts_at if box is not None else None)


def schedule(state: Rollout | None, cmd: CommandInput, plan: Plan, at: datetime) -> Step:
    """A start for later: the pending rollout and a ``schedule`` decision; nothing served."""
    if state is not None and state.phase is Phase.COMPLETED:
        completed = (
            "the flag is completed and serves treatment to everyone: start now, or kill it first"
        )
        return state, [rejected(state, cmd, completed)]
    pending = Rollout(
        flag=cmd.flag,
        rollout_id=cmd.new_rollout_id,
        plan=plan,
        phase=Phase.PENDING,
        stage=0,
        stage_started_at=at,
        salt=cmd.new_salt,
        flag_version=max(state.flag_version if state else 0, cmd.version_floor),
        note=cmd.reason[:500],
        applied=cmd.applied,
        started_at=at,
        updated_at=cmd.now,
        scheduled_at=at,
        scheduled_by=cmd.command_id,
    )
    evidence = RolloutEvidence(schedule=ScheduleRecord(at=at.isoformat()))
    why = Cause("command", cmd.reason or f"scheduled to start at {at.isoformat()}", cmd, evidence)
    return pending, [dataclasses.replace(decision(state, pending, SCHEDULE, why), action=SCHEDULE)]


def due(state: Rollout, event: TickInput) -> Step:
    """A pending rollout at a tick: started once its time came (inside a window), else kept."""
    if state.scheduled_at is None or event.now < state.scheduled_at:
        return state, []
    return forward(state, event.now, event.team_windows, lambda ready: _fire(ready, event.now))


def _fire(state: Rollout, now: datetime) -> Step:
    at = state.scheduled_at or now
    new = bump(
        state,
        now,
        phase=Phase.RUNNING,
        stage=0,
        stage_started_at=now,
        started_at=now,
        scheduled_at=None,
        scheduled_by=None,
    )
    record = ScheduleRecord(at=at.isoformat(), command_id=state.scheduled_by)
    evidence = RolloutEvidence(schedule=record)
    why = Cause("transition", f"the start scheduled for {at.isoformat()} is due", None, evidence)
    return new, [PublishFlagState(), decision(state, new, "start", why)]


def cancel(state: Rollout, cmd: CommandInput) -> Step:
    """``abort`` of a pending rollout: the scheduled start never fires."""
    at = state.scheduled_at.isoformat() if state.scheduled_at else "?"
    new = bump(state, cmd.now, phase=Phase.ABORTED, scheduled_at=None, scheduled_by=None)
    evidence = RolloutEvidence(schedule=ScheduleRecord(at=at, command_id=state.scheduled_by))
    why = Cause(
        "command", cmd.reason or f"the start scheduled for {at} is cancelled", cmd, evidence
    )
    return new, [PublishFlagState(), decision(state, new, "abort", why)]


def time_box_over(state: Rollout, now: datetime) -> Step | None:
    """The flag off at the end of its time box (once: aborted is final), or None."""
    box = state.plan.time_box
    if box is None or now < box.ends_at:
        return None
    if not (state.phase.active or state.phase in (Phase.COMPLETED, Phase.PENDING)):
        return None
    new = bump(
        state,
        now,
        phase=Phase.ABORTED,
        pause_reason=None,
        watch_until=None,
        scheduled_at=None,
        scheduled_by=None,
    )
    ends = box.ends_at.isoformat()
    reason = f"the time box ended at {ends}: the flag is off"
    if state.phase is Phase.PENDING:
        reason = f"the time box ended at {ends} before the scheduled start could fire"
    starts = box.starts_at.isoformat() if box.starts_at else None
    evidence = RolloutEvidence(time_box=TimeBoxRecord(starts_at=starts, ends_at=ends))
    why = Cause("transition", reason, None, evidence)
    return new, [PublishFlagState(), decision(state, new, TIME_BOX_END, why)]
