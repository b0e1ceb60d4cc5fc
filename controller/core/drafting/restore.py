"""Restoring a flag to the state after one of its decisions: the commands that do it.

``rolloutctl restore FLAG --to-decision ID`` proposes signed commands; this module
is the pure part, :func:`plan_restore`: given the state a decision left the flag in
(:class:`FlagThen`: its rollout, phase and stage), the flag as it is now
(:class:`FlagNow`) and the segments its plan names then and now, it returns the
steps that bring the flag back, each saying what changes from what to what, or a
:class:`RestoreRefusal` naming why it cannot.

Only commands the controller takes are proposed: no command lowers a running
rollout's stage, so a rollout ahead of the stage it was at is aborted and started
again with its whole plan, then promoted to that stage, so that the new rollout's
stages are the plan's (status says "stage 3/4" where it said so before, not
"stage 1/2" of a plan cut short). One behind is promoted stage by stage, each
promote made against the stage it leaves (``expect_stage``) and the rollout
(``expect_rollout_id``), so a rollout that moved meanwhile rejects the rest.
Segments come first, so a start finds them as they were. A flag the controller does
not know (a store restored empty, or a flag deleted) is started again with the plan
its rollout had, then promoted to the stage, or to the end, it was at. A segment's earlier rule
is in its decision's evidence; an id list's ids are not (only their digest), so one
whose ids changed since is refused.

Stages are numbered in what a step says as status numbers them, from 1; a
command's ``expect_stage`` is the contract's, from 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from controller.core.rollouts import Phase, Plan
from controller.core.rules import AudienceRule, Segment, conditions, to_text
from controller.core.wire import JsonObject

ACTIVE = ("running", "paused")
_PLAN_UNKNOWN = (
    "the decision's rollout {} is no longer the flag's (now {}): its plan is not known here"
)
ENDINGS = {"killed": "kill", "rolled_back": "rollback", "aborted": "abort"}
"""A rollout ended by hand, by the command that ends it so."""


@dataclass(frozen=True, slots=True)
class FlagThen:
    """The state a decision left its flag in (``phase_after``, ``stage``, ``rollout_id``)."""

    decision_id: str
    rollout_id: str | None
    phase: str | None
    stage: int | None
    plan: Plan | None = None
    """The plan the decision's rollout was started with, where it is known."""


@dataclass(frozen=True, slots=True)
class FlagNow:
    """The flag's rollout as the controller serves it now; ``exists`` False: no such flag."""

    exists: bool
    rollout_id: str | None = None
    phase: str | None = None
    stage: int | None = None
    plan: Plan | None = None
    """The plan of the flag's rollout (the decision's own when it is the same rollout)."""


@dataclass(frozen=True, slots=True)
class SegmentState:
    """A segment as it was or is: gone, a rule, or an id list known by its digest."""

    exists: bool
    rule: JsonObject | None = None
    sha256: str | None = None
    known: bool = True
    """False: no decision before the one restored to says what the segment was."""


@dataclass(frozen=True, slots=True)
class RestoreStep:
    """One command of a restore, and what it changes (``change``: from → to)."""

    kind: Literal["command", "segment_command"]
    action: str
    change: str
    expect_rollout_id: str | None = None
    expect_stage: int | None = None
    to_end: bool = False
    plan: Plan | None = None
    segment: str | None = None
    rule: JsonObject | None = None
    new_rollout: bool = False
    """A step on the rollout a ``start`` before it made: its id is known once it started."""


@dataclass(frozen=True, slots=True)
class RestorePlan:
    """The steps of a restore, in the order they are sent; none: already so."""

    steps: tuple[RestoreStep, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class RestoreRefusal:
    """Why the flag cannot be restored to that decision's state with commands."""

    reason: str


def segments_of(plan: Plan) -> list[str]:
    """The segments a plan's audiences name, each once, in the order they appear."""
    rules = [plan.audience, *(s.audience for s in plan.stages)]
    names: list[str] = []
    for rule in rules:
        for condition in conditions(rule.root) if rule is not None else []:
            if isinstance(condition.value, Segment) and condition.value.segment not in names:
                names.append(condition.value.segment)
    return names


def plan_restore(
    then: FlagThen,
    now: FlagNow,
    segments: Mapping[str, tuple[SegmentState, SegmentState]] | None = None,
) -> RestorePlan | RestoreRefusal:
    """The steps that bring a flag from ``now`` back to ``then``; ``segments`` maps
    each segment the rollout names to its (then, now) state."""
    moves = _segment_steps(segments or {})
    if isinstance(moves, RestoreRefusal):
        return moves
    flag_steps = _flag_steps(then, now)
    if isinstance(flag_steps, RestoreRefusal):
        return flag_steps
    return RestorePlan((*moves, *flag_steps))


def _segment_steps(
    segments: Mapping[str, tuple[SegmentState, SegmentState]],
) -> list[RestoreStep] | RestoreRefusal:
    steps: list[RestoreStep] = []
    for name, (then, now) in sorted(segments.items()):
        if not then.known:
            return RestoreRefusal(
                f"segment {name}: no decision up to the one restored to says what it was "
                "(its content then is unknown)"
            )
        if not then.exists:
            if now.exists:
                change = _seg(name, now, then)
                steps.append(RestoreStep("segment_command", "delete", change, segment=name))
            continue
        if then.rule is not None:
            if not now.exists or now.rule != then.rule:
                step = RestoreStep(
                    "segment_command", "put", _seg(name, now, then), segment=name, rule=then.rule
                )
                steps.append(step)
            continue
        if not now.exists or now.sha256 != then.sha256:
            return RestoreRefusal(
                f"segment {name}: its ids then are not known (a decision keeps only their "
                f"digest {str(then.sha256)[:12]}…), and they have changed since"
            )
    return steps


def _seg(name: str, now: SegmentState, then: SegmentState) -> str:
    return f"segment {name}: {_seg_text(now)} → {_seg_text(then)}"


def _seg_text(state: SegmentState) -> str:
    if not state.exists:
        return "none"
    if state.rule is not None:
        return f"rule {_short(state.rule)}"
    return f"id list {str(state.sha256)[:12]}…"


def _short(rule: JsonObject) -> str:
    try:
        text = to_text(AudienceRule.model_validate(rule))
    except ValueError:
        text = str(rule)
    return text if len(text) <= 80 else text[:79] + "…"


def _flag_steps(then: FlagThen, now: FlagNow) -> Sequence[RestoreStep] | RestoreRefusal:
    if then.phase is None:
        return RestoreRefusal(f"decision {then.decision_id} records no state after it")
    if then.phase in ENDINGS:
        return _ended(then, now)
    if then.phase == Phase.COMPLETED:
        return _completed(then, now)
    if then.phase not in ACTIVE or then.stage is None:
        return RestoreRefusal(
            f"state {then.phase} ({stage_shown(then.stage)}) cannot be brought back with commands"
        )
    return _active(then, now, then.stage)


def _completed(then: FlagThen, now: FlagNow) -> Sequence[RestoreStep] | RestoreRefusal:
    if now.phase == Phase.COMPLETED and now.rollout_id == then.rollout_id:
        return ()
    if now.rollout_id == then.rollout_id and now.phase in ACTIVE:
        return [*_resumed(now, then), _promote(now, now.stage, to_end=True)]
    if not now.exists:  # a store that lost it, or a deleted flag
        if then.plan is None:
            return RestoreRefusal(_PLAN_UNKNOWN.format(then.rollout_id, "none"))
        change = "the new rollout: stage 1 → the end (100%)"
        promote = RestoreStep("command", "promote", change, None, 0, to_end=True, new_rollout=True)
        return [_start(then.plan), promote]
    return RestoreRefusal(
        "the rollout it completed is over or replaced: a completed rollout is not "
        "started again by a command"
    )


def _ended(then: FlagThen, now: FlagNow) -> Sequence[RestoreStep] | RestoreRefusal:
    if now.phase == then.phase and now.rollout_id == then.rollout_id:
        return ()
    if now.phase not in ACTIVE:
        return RestoreRefusal(
            f"the flag's rollout is {now.phase or 'gone'}, not running: nothing to "
            f"{ENDINGS[str(then.phase)]}"
        )
    action = ENDINGS[str(then.phase)]
    change = f"rollout {now.rollout_id}: {now.phase} at {stage_shown(now.stage)} → {then.phase}"
    return [RestoreStep("command", action, change, now.rollout_id, now.stage)]


def _active(then: FlagThen, now: FlagNow, stage: int) -> Sequence[RestoreStep] | RestoreRefusal:
    same = now.rollout_id == then.rollout_id
    if same and now.phase in ACTIVE and now.stage is not None and now.stage <= stage:
        if now.stage == stage:
            return _phase_only(then, now)
        moves = _resumed(now, then)
        moves += [_promote(now, s) for s in range(now.stage, stage)]
        return moves + _paused_again(then, now, same_rollout=True)
    plan = then.plan or (now.plan if same else None)
    if plan is None:
        return RestoreRefusal(_PLAN_UNKNOWN.format(then.rollout_id, now.rollout_id or "none"))
    if not 0 <= stage < len(plan.stages):
        return RestoreRefusal(
            f"{stage_shown(stage)} is not in the rollout's plan (of {len(plan.stages)} stages)"
        )
    steps: list[RestoreStep] = []
    if now.phase in ACTIVE:
        change = f"rollout {now.rollout_id}: {now.phase} at {stage_shown(now.stage)} → aborted"
        steps.append(RestoreStep("command", "abort", change, now.rollout_id, now.stage))
    steps.append(_start(plan))
    steps += [_promote_new(plan, s) for s in range(stage)]
    return steps + _paused_again(then, now, same_rollout=False)


def _start(plan: Plan) -> RestoreStep:
    first = f"{stage_shown(0)} ({plan.stages[0].percent:g}%)"
    return RestoreStep("command", "start", f"new rollout of the same plan at {first}", plan=plan)


def _promote_new(plan: Plan, stage: int) -> RestoreStep:
    to = f"{stage_shown(stage + 1)} ({plan.stages[stage + 1].percent:g}%)"
    change = f"the new rollout: {stage_shown(stage)} → {to}"
    return RestoreStep("command", "promote", change, None, stage, new_rollout=True)


def stage_shown(stage: int | None) -> str:
    """A stage as status shows it, from 1."""
    return "no stage" if stage is None else f"stage {stage + 1}"


def _phase_only(then: FlagThen, now: FlagNow) -> list[RestoreStep]:
    if then.phase == now.phase:
        return []
    if now.phase == Phase.PAUSED:
        return _resumed(now, then)
    change = f"rollout {now.rollout_id}: running → paused"
    return [RestoreStep("command", "pause", change, now.rollout_id, now.stage)]


def _resumed(now: FlagNow, then: FlagThen) -> list[RestoreStep]:
    if now.phase != Phase.PAUSED:
        return []
    change = f"rollout {now.rollout_id}: paused → running"
    return [RestoreStep("command", "resume", change, now.rollout_id, now.stage)]


def _promote(now: FlagNow, stage: int | None, *, to_end: bool = False) -> RestoreStep:
    to = "the end (100%)" if to_end else stage_shown((stage or 0) + 1)
    change = f"rollout {now.rollout_id}: {stage_shown(stage)} → {to}"
    return RestoreStep("command", "promote", change, now.rollout_id, stage, to_end=to_end)


def _paused_again(then: FlagThen, now: FlagNow, *, same_rollout: bool) -> list[RestoreStep]:
    if then.phase != Phase.PAUSED:
        return []
    if same_rollout:
        change = f"rollout {now.rollout_id}: running → paused"
        return [RestoreStep("command", "pause", change, now.rollout_id)]
    return [RestoreStep("command", "pause", "the new rollout: running → paused", new_rollout=True)]
