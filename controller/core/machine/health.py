"""What a health trigger does to a rollout, as the plan's policy says.

:mod:`controller.core.rollouts.policy` says which action a trigger takes and which
entry of the plan chose it; this module turns that into verdicts and
transitions:

* the gate names the trigger behind a verdict (:func:`verdict`): ``rollback``
  is a rollback verdict, ``hold`` a pause with the trigger's reason, ``warn``
  a hold — the stage keeps running, and does not move forward on a verdict a
  trigger stands behind;
* the machine acts on it (:func:`act`): ``rollback`` rolls back (critical
  alert), ``hold`` pauses with the reason and an alert (only an operator
  resumes), ``warn`` raises one alert per stage and trigger and records it;
* a stage past its ``max_duration`` (:func:`overdue`) never promotes: it
  alerts ``stuck`` once (warn), pauses once (hold) or rolls back.

Every decision and alert these produce carries the policy's evidence under
``evidence.policy``: the trigger, the action and the entry applied. Pure.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from controller.core.machine.transitions import Cause, Step, at_stage, pause, roll_back
from controller.core.reading import AT_STAGE, rollout_stage, stage_position
from controller.core.reading import at_stage as stage_at
from controller.core.rollouts import (
    Action,
    Applied,
    GateInput,
    HealthPolicy,
    PauseReason,
    Phase,
    Plan,
    RaiseAlert,
    RecordDecision,
    Rollout,
    TickInput,
    Trigger,
    Unavailable,
    Verdict,
    VerdictKind,
    action_for,
    both_arms_tripped,
)
from controller.core.stats import FlagAggregates
from controller.core.wire import GateEvidence, JsonObject, RolloutEvidence

POLICY = "policy"
"""The evidence key naming the trigger, the action and the policy entry applied."""

PAUSE_REASONS: dict[Trigger, PauseReason] = {
    "guardrail_regression": PauseReason.GUARDRAIL,
    "sample_ratio_mismatch": PauseReason.SRM,
    "units_in_both_arms": PauseReason.UNITS_IN_BOTH_ARMS,
    "no_traffic": PauseReason.NO_TRAFFIC,
    "inconclusive": PauseReason.INCONCLUSIVE,
    "advisor_unavailable": PauseReason.ADVISOR_UNAVAILABLE,
    "backend_drift": PauseReason.BACKEND_DRIFT,
}
"""The pause reason of each trigger's ``hold``."""

ALERT_KINDS: dict[Trigger, str] = {
    "guardrail_regression": "guardrail",
    "sample_ratio_mismatch": "srm",
    "units_in_both_arms": "units_in_both_arms",
    "no_traffic": "no_traffic",
    "inconclusive": "stuck",
    "advisor_unavailable": "advisor_unavailable",
    "backend_drift": "backend_drift",
}
"""The alert kind of each trigger's ``hold`` and ``warn`` (a rollback alerts ``rollback``)."""

_KINDS = {"rollback": VerdictKind.ROLLBACK, "hold": VerdictKind.PAUSE, "warn": VerdictKind.HOLD}


def verdict(applied: Applied, reason: str, evidence: GateEvidence) -> Verdict:
    """The gate's verdict on a trigger, of the kind its action implies, naming the policy."""
    held = PAUSE_REASONS[applied.trigger] if applied.action == "hold" else None
    evidence = evidence.model_copy(update={POLICY: applied.part()})
    return Verdict(_KINDS[applied.action], reason, held, evidence, applied=applied)


def named(why: Cause, applied: Applied) -> Cause:
    """``why`` with the policy's evidence."""
    return dataclasses.replace(why, evidence=why.evidence.merged(policy=applied.part()))


def act(state: Rollout, now: datetime, applied: Applied, why: Cause) -> Step:
    """What ``applied`` does to an active rollout: roll back, pause, or warn once per stage.

    A paused rollout is rolled back or warned about, and stays paused on ``hold``.
    """
    why = named(why, applied)
    if not state.phase.active:
        return state, []
    if applied.action == "rollback":
        return roll_back(state, now, why)
    if applied.action == "hold":
        if state.phase is not Phase.RUNNING:
            return state, []
        reason = PAUSE_REASONS[applied.trigger]
        return pause(state, now, reason, why, alert=ALERT_KINDS[applied.trigger])
    return warn(state, now, applied, why)


def warn(state: Rollout, now: datetime, applied: Applied, why: Cause) -> Step:
    """One alert per stage and trigger, recorded; the rollout goes on as it was."""
    if applied.trigger in state.warned:
        return state, []
    new = state.model_copy(update={"warned": [*state.warned, applied.trigger], "updated_at": now})
    summary = f"{state.flag} at {rollout_stage(state)}: {why.reason} (the plan warns only)"
    details = {"stage": state.stage, **why.evidence.wire(), AT_STAGE: stage_position(state)}
    record = RecordDecision(
        kind=why.kind,
        action="warn",
        outcome="recorded",
        reason=why.reason[:500],
        phase_before=state.phase.value,
        phase_after=new.phase.value,
        stage=state.stage,
        evidence=why.evidence.merged(**at_stage(state)),
    )
    alert = RaiseAlert(ALERT_KINDS[applied.trigger], "warning", summary[:500], details)
    return new, [record, alert]


def overdue(state: Rollout, event: TickInput) -> Step:
    """A stage past its ``max_duration`` without a decision: it never promotes.

    ``warn`` (the default) alerts ``stuck`` once, running or paused; ``hold``
    pauses a running stage once (a paused one is alerted about); ``rollback``
    rolls back. Each happens once per stage (``stuck_alerted``), so a stage an
    operator resumed is not held again.
    """
    limit = state.plan.stages[state.stage].max_duration if state.phase.active else None
    if limit is None or state.stuck_alerted or event.now - state.stage_started_at <= limit:
        return state, []
    applied = action_for(state.plan.health_words, "inconclusive")
    details: JsonObject = {
        "stage": state.stage,
        **stage_at(state),
        "phase": state.phase.value,
        "max_duration_s": limit.total_seconds(),
        POLICY: applied.evidence(),
    }
    reason = f"{rollout_stage(state)} has run past its max_duration of {limit}"
    if event.waiting is not None:  # the partitions it waits for, their lag and owners
        details["incomplete"] = event.waiting.model_dump(mode="json", exclude_none=True)
        reason = f"{reason}; {event.waiting.waiting}"
    acting = applied.action == "rollback" or (
        applied.action == "hold" and state.phase is Phase.RUNNING
    )
    if acting:
        said = Cause("gate", reason, None, RolloutEvidence.model_validate(details))
        new, actions = act(state, event.now, applied, said)
        marked = new.model_copy(update={"stuck_alerted": True}) if new is not None else None
        return marked, actions
    new = state.model_copy(update={"stuck_alerted": True, "updated_at": event.now})
    return new, [RaiseAlert("stuck", "warning", f"{state.flag}: {reason}", details)]


def outage_alert(state: Rollout, event: GateInput, taken: list[Action]) -> list[Action]:
    """The alert for the failure that began an advisor outage, whichever gate saw it.

    Not when the plan's policy already paused or rolled back for it, with its own alert.
    """
    if not (event.advisor_alert and isinstance(event.advice, Unavailable)):
        return []
    if any(_for_advisor(action) for action in taken):
        return []
    applied = action_for(state.plan.health_words, "advisor_unavailable")
    proceed = "gates proceed on the statistics" if applied.action == "warn" else applied.action
    summary = f"advisor unavailable, {proceed}: {event.advice.cause}"
    return [RaiseAlert("advisor_unavailable", "warning", summary[:500], {})]


def _for_advisor(action: Action) -> bool:
    """An alert the advisor policy's rollback or hold raised."""
    if not isinstance(action, RaiseAlert):
        return False
    named = action.details.get(POLICY)
    return isinstance(named, dict) and named.get("trigger") == "advisor_unavailable"


def drift_alerted(before: Rollout, after: Rollout) -> bool:
    """Whether the machine's reaction to the drift raised its alert: the pause, the
    rollback or the warning (once per stage) the plan's policy chose."""
    if after.rollout_id != before.rollout_id:
        return False
    moved = after.flag_version != before.flag_version
    if moved and after.pause_reason is PauseReason.BACKEND_DRIFT:
        return True
    if moved and after.phase is Phase.ROLLED_BACK:
        return True
    return after.stage == before.stage and "backend_drift" in after.warned


MIN_BOTH_ARMS = 5
"""Watched units seen in both arms below which the share is not judged (too few to tell)."""


def both_arms(plan: Plan, data: FlagAggregates, evidence: GateEvidence) -> Verdict | None:
    """The trigger's verdict when too many of the stage's units were seen in both arms."""
    both, units = data.both_arms, data.watched_units
    if both < MIN_BOTH_ARMS or not both_arms_tripped(both, units, plan.health_policy):
        return None
    limit = (plan.health_policy or HealthPolicy()).both_arms_max_share
    why = (
        f"{both} of {units} watched units ({both / units:.2%}) were seen in both arms"
        f", over the {limit:.2%} the plan allows"
    )
    return verdict(action_for(plan.health_words, "units_in_both_arms"), why, evidence)
