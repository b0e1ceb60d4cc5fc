"""The shared transitions of the rollout state machine, and why each happens.

Each builds the new state (a new flag version, recorded against its stage)
and the actions it implies: publish the flag state, record the decision, and
for rollbacks, kills and automatic pauses, raise an alert. Pure, like
:mod:`controller.core.machine.machine`, which decides when to take them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.core.machine.watching import start_watch, watch_evidence
from controller.core.reading import AT_STAGE, rollout_stage, stage_position
from controller.core.rollouts import (
    Action,
    CommandInput,
    CommandRefused,
    Ending,
    MonitorUpInput,
    Opinion,
    OpinionInput,
    PauseReason,
    Phase,
    PublishFlagState,
    RaiseAlert,
    RecordDecision,
    Rollout,
    Verdict,
    Watch,
)
from controller.core.stats import NO_CONTROL
from controller.core.wire import OpinionOn, RolloutEvidence, StagePosition

Step = tuple[Rollout | None, list[Action]]


@dataclass(frozen=True, slots=True)
class Cause:
    """Why a transition happens: the gate (with evidence) or a command."""

    kind: str
    reason: str
    cmd: CommandInput | None = None
    evidence: RolloutEvidence = field(default_factory=RolloutEvidence)

    @classmethod
    def of(cls, cmd: CommandInput, default_reason: str) -> Cause:
        return cls("command", cmd.reason or default_reason, cmd)

    @classmethod
    def gate(cls, verdict: Verdict) -> Cause:
        return cls("gate", verdict.reason, None, RolloutEvidence.of_gate(verdict.evidence))


def advance(state: Rollout, now: datetime, why: Cause) -> Step:
    if state.stage + 1 >= len(state.plan.stages):
        if state.plan.watch is not None and not state.watching:
            return enter_watch(state, now, why, state.plan.watch)
        return complete(state, now, why)
    stage = state.stage + 1
    new = bump(
        state,
        now,
        **passed(state, now, "advance", why),
        phase=Phase.RUNNING,
        pause_reason=None,
        stage=stage,
        stage_started_at=now,
        stuck_alerted=False,
        dry_run_alerted=False,
        advisor_hold_until=None,
        final_look_at=None,
        warned=[],
    )
    return new, [PublishFlagState(), decision(state, new, "advance", why)]


def enter_watch(state: Rollout, now: datetime, why: Cause, watch: Watch) -> Step:
    new = start_watch(state, now, watch).model_copy(update=passed(state, now, "watch", why))
    why = dataclasses.replace(why, evidence=why.evidence.merged(**watch_evidence(state)))
    return new, [PublishFlagState(), decision(state, new, "watch", why)]


def complete(state: Rollout, now: datetime, why: Cause) -> Step:
    new = bump(
        state,
        now,
        **passed(state, now, "complete", why),
        phase=Phase.COMPLETED,
        pause_reason=None,
        watch_until=None,
        completed_at=now,
    )
    return new, [PublishFlagState(), decision(state, new, "complete", why)]


def passed(state: Rollout, now: datetime, action: str, why: Cause) -> dict[str, Ending]:
    """The gate's pass of ``state``'s stage to keep (:attr:`Rollout.limits_gated`) where its
    limits gated it (no concurrent control) for a minimum time of its own: a ring that then
    completes after a closing step of a second says what its limits showed in the ring."""
    stage = state.plan.stages[state.stage]
    gated = why.evidence.comparison == NO_CONTROL and bool(why.evidence.limits)
    if why.kind != "gate" or not gated or not stage.min_duration or state.watching:
        return {}
    evidence = why.evidence.merged(at_stage=position_of(state))
    kept = Ending(at=now, action=action, kind=why.kind, reason=why.reason, evidence=evidence)
    return {"limits_gated": kept}


ALERTED_PAUSES = (
    PauseReason.SRM,
    PauseReason.NO_TRAFFIC,
    PauseReason.GUARDRAIL,
    PauseReason.BACKEND_DRIFT,
    PauseReason.UNITS_IN_BOTH_ARMS,
    PauseReason.INCONCLUSIVE,
    PauseReason.ADVISOR_UNAVAILABLE,
    PauseReason.MONITOR,
)


def pause(
    state: Rollout, now: datetime, reason: PauseReason, why: Cause, *, alert: str | None = None
) -> Step:
    """Paused for ``reason``; an automatic pause alerts (kind ``alert``, else the reason)."""
    new = bump(state, now, phase=Phase.PAUSED, pause_reason=reason)
    actions: list[Action] = [
        PublishFlagState(),
        decision(state, new, f"pause:{reason.value}", why),
    ]
    if reason in ALERTED_PAUSES:
        details = {"stage": state.stage, **why.evidence.wire(), AT_STAGE: stage_position(state)}
        summary = f"{state.flag} paused at {rollout_stage(state)}: {why.reason}"
        actions.append(RaiseAlert(alert or reason.value, "warning", summary, details))
    return new, actions


def roll_back(state: Rollout, now: datetime, why: Cause) -> Step:
    new = bump(state, now, phase=Phase.ROLLED_BACK, pause_reason=None)
    summary = f"{state.flag} rolled back at {rollout_stage(state)}: {why.reason}"
    details = {"stage": state.stage, **why.evidence.wire(), AT_STAGE: stage_position(state)}
    return new, [
        PublishFlagState(),
        decision(state, new, "rollback", why),
        RaiseAlert("rollback", "critical", summary, details),
    ]


def kill(state: Rollout, now: datetime, why: Cause) -> Step:
    if not (state.phase.active or state.phase in (Phase.COMPLETED, Phase.PENDING)):
        if why.cmd is None:
            return state, []
        return state, [rejected(state, why.cmd, f"the flag is already {state.phase.value}")]
    new = bump(state, now, phase=Phase.KILLED, pause_reason=None, scheduled_at=None)
    summary = f"{state.flag} killed at {rollout_stage(state)}: {why.reason}"
    details = {**why.evidence.wire(), AT_STAGE: stage_position(state)}
    return new, [
        PublishFlagState(),
        decision(state, new, "kill", why),
        RaiseAlert("kill", "critical", summary, details),
    ]


def recovered(state: Rollout, event: MonitorUpInput) -> Step:
    if state.phase is not Phase.KILLED:
        return state, []
    reason = (
        f"monitor {event.monitor} is up again; the flag stays killed until "
        "an operator starts a new rollout"
    )
    return state, [
        RecordDecision(
            kind="monitor",
            action="monitor_up",
            outcome="recorded",
            reason=reason,
            phase_before=state.phase.value,
            phase_after=state.phase.value,
            stage=state.stage,
            evidence=RolloutEvidence(
                monitor=event.monitor, incident=event.incident_id, at_stage=position_of(state)
            ),
        )
    ]


def with_ending(before: Rollout | None, step: Step) -> Step:
    """``step``, its new state keeping the decision that finished it, when it finished one.

    Kept in the state so its status still says why it ended, and on what evidence,
    after the decision has left the topic's retention.
    """
    new, actions = step
    if new is None or not new.phase.terminal or new == before:
        return step
    if before is not None and (before.rollout_id, before.phase) == (new.rollout_id, new.phase):
        return step
    records = (a for a in reversed(actions) if isinstance(a, RecordDecision))
    record = next((r for r in records if r.outcome == "applied"), None)
    if record is None:
        return step
    ended = Ending(
        at=new.updated_at,
        action=record.action,
        kind=record.kind,
        reason=record.reason,
        evidence=record.evidence,
    )
    return new.model_copy(update={"ended": ended}), actions


STEERING = frozenset({"promote", "pause", "resume"})
"""Operators' commands that change a running rollout's course and leave it running."""
MAX_STEERED = 8


def with_steering(before: Rollout | None, event: object, step: Step) -> Step:
    """``step``, its new state keeping the operator's command (``event``) that changed its
    course while it still runs (a promote to a next stage, a pause, a resume), the last
    :data:`MAX_STEERED`: ``rolloutctl diff`` says a live rollout is not the files'."""
    new, actions = step
    if not isinstance(event, CommandInput) or event.action.value not in STEERING:
        return step
    if new is None or before is None or new.rollout_id != before.rollout_id:
        return step
    records = (a for a in actions if isinstance(a, RecordDecision) and a.outcome == "applied")
    record = next((r for r in records if r.command_id == event.command_id), None)
    if record is None or not new.phase.active:
        return step
    steered = Ending(
        at=new.updated_at,
        action=event.action.value,
        kind=record.kind,
        reason=event.reason,
        evidence=record.evidence,
    )
    return new.model_copy(update={"steered": [*new.steered, steered][-MAX_STEERED:]}), actions


def bump(state: Rollout, now: datetime, **changes: Any) -> Rollout:
    """A new state with a new flag version, recorded against the (new) stage."""
    version = state.flag_version + 1
    stage = changes.get("stage", state.stage)
    versions = {k: list(v) for k, v in state.stage_versions.items()}
    versions.setdefault(stage, []).append(version)
    # Any transition ends a wait for a release window.
    update = {"window_wait": None, **changes}
    return state.model_copy(
        update={**update, "flag_version": version, "stage_versions": versions, "updated_at": now}
    )


def decision(before: Rollout | None, after: Rollout, action: str, why: Cause) -> RecordDecision:
    """The record of a transition: its evidence names the stage it was taken at and by whom.

    ``stage`` is where the rollout is after it (for an advance, the new stage);
    ``evidence.at_stage`` the stage it was decided at, so a report can put
    the evidence next to the stage it was measured in.
    """
    cmd = why.cmd
    at = before if before is not None and before.rollout_id == after.rollout_id else after
    evidence = why.evidence.merged(at_stage=position_of(at), **operator(cmd))
    return RecordDecision(
        kind=why.kind,
        action=cmd.action.value if cmd else action,
        outcome="applied",
        reason=why.reason,
        phase_before=before.phase.value if before else None,
        phase_after=after.phase.value,
        stage=after.stage,
        command_id=cmd.command_id if cmd else None,
        evidence=evidence,
    )


def applied(
    before: Rollout | None, after: Rollout, cmd: CommandInput, action: str
) -> RecordDecision:
    return decision(before, after, action, Cause("command", cmd.reason, cmd))


def rejected(state: Rollout | None, cmd: CommandInput, reason: str) -> RecordDecision:
    phase = state.phase.value if state else None
    return RecordDecision(
        kind="command",
        action=cmd.action.value,
        outcome="rejected",
        reason=reason,
        phase_before=phase,
        phase_after=phase,
        stage=state.stage if state else None,
        command_id=cmd.command_id,
        evidence=RolloutEvidence.model_validate({**at_stage(state), **operator(cmd)}),
    )


def refused(state: Rollout | None, event: CommandRefused) -> Step:
    """A command refused before it could act: unchanged, with the rejected decision."""
    phase = state.phase.value if state else None
    return state, [
        RecordDecision(
            kind="command",
            action=event.action.value,
            outcome="rejected",
            reason=event.reason,
            phase_before=phase,
            phase_after=phase,
            stage=state.stage if state else None,
            command_id=event.command_id,
            evidence=RolloutEvidence.model_validate(
                {"actor": event.actor, "key_id": event.key_id, **at_stage(state)}
            ),
        )
    ]


def operator(cmd: CommandInput | None) -> dict[str, str | None]:
    """Who signed a command, for its decision's evidence; nothing for the gate's own."""
    if cmd is None:
        return {}
    return {"actor": cmd.actor, "key_id": cmd.key_id}


def parent_killed(child: Rollout, parent: str, by: str, why: str) -> RecordDecision:
    """The entry a served child's history gets when ``parent``, a flag its plan requires,
    is killed (``by`` whom, ``why``): nothing of the child changes, its units are served
    control with ``PREREQUISITE_FAILED`` from the kill's flag state on; ``recorded``."""
    return RecordDecision(
        kind="command",
        action="prerequisite_killed",
        outcome="recorded",
        reason=f"{parent}, a flag it requires, was killed by {by}: {why}; its units are "
        f"served control (PREREQUISITE_FAILED)"[:500],
        phase_before=child.phase.value,
        phase_after=child.phase.value,
        stage=child.stage,
        evidence=RolloutEvidence(at_stage=position_of(child)),
    )


def position_of(rollout: Rollout) -> StagePosition:
    """Where ``rollout`` stands in its plan, as a decision's evidence carries it."""
    return StagePosition.model_validate(stage_position(rollout))


def at_stage(rollout: Rollout | None) -> dict[str, StagePosition]:
    """Where ``rollout`` stands, for a decision's evidence; nothing without one."""
    return {AT_STAGE: position_of(rollout)} if rollout is not None else {}


def record_opinion(state: Rollout, event: OpinionInput) -> Step:
    """The opinion as a decision of kind ``advisor``; the rollout is unchanged.

    An opinion on a rollout that has since been replaced is dropped: its decision
    belongs to a rollout no longer there.
    """
    asked = event.asked
    if state.rollout_id != asked.rollout_id:
        return state, []
    advice = event.advice
    if isinstance(advice, Opinion):
        reason = f"advisory opinion on the advance: {advice.advice.action}"
    else:
        reason = f"advisory opinion missing: {advice.cause}"
    on = OpinionOn(
        rollout_id=asked.rollout_id,
        stage=asked.stage,
        flag_version=asked.flag_version,
        decided_at=event.decided_at.isoformat(),
        statistical_verdict="advance",
    )
    evidence = RolloutEvidence(
        advisor=advice.evidence(),
        advisor_mode="advisory",
        opinion_on=on,
        at_stage=position_of(asked),
    )
    record = RecordDecision(
        kind="advisor",
        action="opinion",
        outcome="recorded",
        reason=reason[:500],
        phase_before=state.phase.value,
        phase_after=state.phase.value,
        stage=state.stage,
        evidence=evidence,
    )
    return state, [record]
