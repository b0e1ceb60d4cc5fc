"""What an operator's command does to a rollout: the command rows of the machine's table.

Pure, a part of the state machine (:mod:`controller.core.machine.machine`, whose
:func:`~controller.core.machine.machine.step` hands every command here). Each command
is accepted only in the phases the table there names; anything else is
rejected with a reason and changes nothing. ``promote`` and ``approve`` move
forward only inside the release windows (:func:`~controller.core.machine.waiting.forward_command`);
the others are never windowed; a ``start`` whose windows (the plan's, else the
team's) never open again from when it begins is refused, as it could never leave
its first stage. :func:`applicable` lists the commands a phase accepts, for the
console to offer.
"""

from __future__ import annotations

from datetime import datetime

from controller.core.machine import approving
from controller.core.machine.scheduling import cancel, schedule, start_time
from controller.core.machine.transitions import (
    Cause,
    Step,
    advance,
    applied,
    bump,
    complete,
    kill,
    pause,
    rejected,
    roll_back,
)
from controller.core.machine.waiting import forward_command
from controller.core.rollouts import (
    ApprovalGate,
    CommandInput,
    PauseReason,
    Phase,
    Plan,
    PublishFlagState,
    Rollout,
    Window,
    never_opens,
)
from controller.core.serving import next_version
from controller.core.wire import CommandAction


def command(state: Rollout | None, cmd: CommandInput) -> Step:
    if (moved := moved_on(state, cmd)) is not None:
        return state, [rejected(state, cmd, moved)]
    if cmd.action is CommandAction.START:
        return _start(state, cmd)
    if state is None:
        return None, [rejected(None, cmd, "no rollout exists for this flag")]
    handler = _HANDLERS[cmd.action]
    return handler(state, cmd)


def moved_on(state: Rollout | None, cmd: CommandInput) -> str | None:
    """Why the flag is no longer what ``cmd`` was made against; None when it still is.

    Checked before anything else: a proposal signed after the flag changed says what it
    proposed for a flag that no longer exists as it was read, whatever it asks.
    """
    version = state.flag_version if state is not None else 0
    if cmd.expect_version is not None and cmd.expect_version != version:
        return f"stale: made against flag version {cmd.expect_version}, the flag is at {version}"
    rollout = state.rollout_id if state is not None else None
    if cmd.expect_rollout_id is not None and cmd.expect_rollout_id != rollout:
        now = f"rollout {rollout}" if rollout else "no rollout"
        return f"stale: made against rollout {cmd.expect_rollout_id}, the flag has {now}"
    stage = state.stage if state is not None else None
    if cmd.expect_stage is not None and cmd.expect_stage != stage:
        # Counted from 1 here, as people count stages.
        now = "no stage" if stage is None else f"stage {stage + 1}"
        return f"stale: made at stage {cmd.expect_stage + 1}, the rollout is at {now}"
    return None


def _start(state: Rollout | None, cmd: CommandInput) -> Step:
    if state is not None and state.phase.active:
        return state, [rejected(state, cmd, f"a rollout is already {state.phase.value}")]
    if cmd.plan is None:
        return state, [rejected(state, cmd, "start needs a plan")]
    if state is not None and state.phase is Phase.PENDING and state.scheduled_at is not None:
        why = f"a start is scheduled for {state.scheduled_at.isoformat()}; abort it first"
        return state, [rejected(state, cmd, why)]
    at = start_time(cmd)
    shut = _shut_windows(cmd.plan, cmd.team_windows, max(cmd.now, at or cmd.now))
    if shut is not None:
        return state, [rejected(state, cmd, shut)]
    if at is not None and at > cmd.now:
        return schedule(state, cmd, cmd.plan, at)
    version = next_version(state.flag_version if state else 0, cmd.version_floor)
    stage = min(max(cmd.start_stage, 0), len(cmd.plan.stages) - 1)
    new = Rollout(
        flag=cmd.flag,
        rollout_id=cmd.new_rollout_id,
        plan=cmd.plan,
        phase=Phase.RUNNING,
        stage=stage,
        stage_started_at=cmd.now,
        salt=cmd.new_salt,
        flag_version=version,
        stage_versions={stage: [version]},
        note=cmd.reason[:500],
        applied=cmd.applied,
        started_at=cmd.now,
        updated_at=cmd.now,
    )
    return new, [PublishFlagState(), applied(state, new, cmd, "start")]


def _shut_windows(plan: Plan, team: tuple[Window, ...], begins: datetime) -> str | None:
    """Why the rollout could never leave its first stage: its windows (the plan's, else the
    team's) never open again from when it begins."""
    shut = never_opens(plan.windows if plan.windows is not None else team, begins)
    if shut is None:
        return None
    named = plan.windows is not None
    whose = "the plan's windows" if named else "the team's windows (engine.windows_file)"
    return f"{whose}: {shut}"


def _pause_cmd(state: Rollout, cmd: CommandInput) -> Step:
    if state.phase is not Phase.RUNNING:
        return state, [rejected(state, cmd, f"cannot pause {_a(state.phase.value)} rollout")]
    return pause(state, cmd.now, PauseReason.OPERATOR, Cause.of(cmd, "operator pause"))


def _resume(state: Rollout, cmd: CommandInput) -> Step:
    if state.phase is not Phase.PAUSED:
        return state, [rejected(state, cmd, f"cannot resume {_a(state.phase.value)} rollout")]
    if state.pause_reason in (PauseReason.AWAITING_APPROVAL, PauseReason.ADVISOR_OBJECTION):
        return state, [rejected(state, cmd, "the rollout awaits an approval; use approve")]
    new = bump(state, cmd.now, phase=Phase.RUNNING, pause_reason=None)
    return new, [PublishFlagState(), applied(state, new, cmd, "resume")]


def _approve(state: Rollout, cmd: CommandInput) -> Step:
    waiting = (PauseReason.AWAITING_APPROVAL, PauseReason.ADVISOR_OBJECTION)
    if state.phase is not Phase.PAUSED or state.pause_reason not in waiting:
        return state, [rejected(state, cmd, "nothing awaits an approval")]
    gate = state.plan.stages[state.stage].approval
    if state.pause_reason is PauseReason.AWAITING_APPROVAL and isinstance(gate, ApprovalGate):
        return approving.count(state, cmd, gate)  # approvals by several people
    return forward_command(state, cmd, lambda s: advance(s, cmd.now, Cause.of(cmd, "approved")))


def _promote(state: Rollout, cmd: CommandInput) -> Step:
    if not state.phase.active:
        return state, [rejected(state, cmd, f"cannot promote {_a(state.phase.value)} rollout")]
    if cmd.to_end:
        why = Cause.of(cmd, "promoted to the end")
        return forward_command(state, cmd, lambda s: complete(s, cmd.now, why))
    return forward_command(state, cmd, lambda s: advance(s, cmd.now, Cause.of(cmd, "promoted")))


def _rollback_cmd(state: Rollout, cmd: CommandInput) -> Step:
    if not state.phase.active:
        return state, [rejected(state, cmd, f"cannot roll back {_a(state.phase.value)} rollout")]
    return roll_back(state, cmd.now, Cause.of(cmd, "operator rollback"))


def _abort(state: Rollout, cmd: CommandInput) -> Step:
    if state.phase is Phase.PENDING:
        return cancel(state, cmd)
    if not state.phase.active:
        return state, [rejected(state, cmd, f"cannot abort {_a(state.phase.value)} rollout")]
    new = bump(state, cmd.now, phase=Phase.ABORTED, pause_reason=None)
    return new, [PublishFlagState(), applied(state, new, cmd, "abort")]


def _kill_cmd(state: Rollout, cmd: CommandInput) -> Step:
    return kill(state, cmd.now, Cause.of(cmd, f"killed by {cmd.actor}"))


_AWAITING = (PauseReason.AWAITING_APPROVAL, PauseReason.ADVISOR_OBJECTION)


def applicable(phase: Phase, pause_reason: PauseReason | None = None) -> list[CommandAction]:
    """The commands a rollout in ``phase`` accepts: what the console offers, nothing more.

    The same guards the handlers above apply (a test runs every command
    through :func:`~controller.core.machine.machine.step` in every phase to hold the
    two together); start is left out, since it needs a plan.
    """
    active, paused = phase.active, phase is Phase.PAUSED
    pending = phase is Phase.PENDING
    allowed = {
        CommandAction.PAUSE: phase is Phase.RUNNING,
        CommandAction.RESUME: paused and pause_reason not in _AWAITING,
        CommandAction.APPROVE: paused and pause_reason in _AWAITING,
        CommandAction.PROMOTE: active,
        CommandAction.ROLLBACK: active,
        CommandAction.ABORT: active or pending,
        CommandAction.KILL: active or pending or phase is Phase.COMPLETED,
    }
    return [action for action, ok in allowed.items() if ok]


_HANDLERS = {
    CommandAction.PAUSE: _pause_cmd,
    CommandAction.RESUME: _resume,
    CommandAction.APPROVE: _approve,
    CommandAction.PROMOTE: _promote,
    CommandAction.ROLLBACK: _rollback_cmd,
    CommandAction.ABORT: _abort,
    CommandAction.KILL: _kill_cmd,
}


def _a(phase: str) -> str:
    """The phase with its indefinite article, for a rejection: "a paused", "an aborted"."""
    return f"{'an' if phase[:1] in tuple('aeiou') else 'a'} {phase}"
