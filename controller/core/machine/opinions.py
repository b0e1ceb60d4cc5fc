"""Advisory opinions: asked after the gate decided, recorded when they arrive.

In ``advisory`` mode the statistics decide at once; the model's opinion on that
decision is a record of its own, linked to it by rollout, stage and the gate's
time. It never holds a stage, never counts against the flag's health (a missing
opinion is recorded as missing, not alerted) and changes no timing.
"""

from __future__ import annotations

from controller.core.machine.transitions import Step, position_of
from controller.core.rollouts import Opinion, OpinionInput, RecordDecision, Rollout
from controller.core.wire import OpinionOn, RolloutEvidence


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
