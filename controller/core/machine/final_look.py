"""A stage's final look: the fixed-horizon half of the sequential hybrid.

Pure. When the gate would let a compared stage move on (its minimum time, sample and every
floor reached: the stage's planned end, or later when it had to wait), each gating
guardrail read from events is tested once more, by the one-sided z-test of the same
difference and variance on units at the share of its level kept for this look
(:func:`~controller.core.stats.guardrails.fixed_horizon_test`). Harm shown there rolls back
(or as the guardrail's action says), like harm shown by the always-valid boundary at any look; a
stage that passes records the time (:attr:`Rollout.final_look_at`), so a stage held after
it (an advisor, an approval, a window) is never looked at again: from then on only the
always-valid boundary watches it, at its own share. docs/architecture.md, *Statistics*,
"The final look", gives the method and its references.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from controller.core.machine import health
from controller.core.reading import quantity_text
from controller.core.rollouts import (
    GateInput,
    Guardrail,
    Rollout,
    Verdict,
    VerdictKind,
    action_for,
)
from controller.core.stats import (
    FAILURE_TESTS,
    NEW_FAILURES,
    FixedHorizonResult,
    FlagAggregates,
    SequentialResult,
    control_baseline,
    fixed_horizon_test,
)
from controller.core.wire import FinalLook, FixedHorizonTest, GateEvidence


def has_final_look(rollout: Rollout) -> bool:
    """Whether the rollout's current stage ends with a final look: a compared stage (a
    control to compare with, not a watch) of a plan that spends some of its level on it."""
    return rollout.plan.final_look_share > 0 and rollout.percent < 100 and not rollout.watching


def always_valid_level(rollout: Rollout, guardrail: Guardrail) -> float | None:
    """The level of ``guardrail``'s always-valid test: in a stage with a final look, what
    the look leaves of it; else the plan's (None)."""
    if guardrail.dry_run or not has_final_look(rollout):
        return None
    return rollout.plan.sequential_alpha(guardrail.key)


def final_look(
    rollout: Rollout,
    data: FlagAggregates,
    now: datetime,
    tests: dict[str, SequentialResult | None],
    advance: Verdict,
    *,
    at_end: bool = False,
) -> Verdict:
    """``advance``, the gate's verdict that the stage may move on, after its final look: a
    rollback where the look shows harm, else ``advance`` with the look in its evidence.
    ``at_end``: ``advance`` is a hold for guardrails not yet tested at the stage's planned
    end (its minimum time and units reached): the look is taken there too, on the guardrails
    tested by then (those tested later have none; their share is not spent). Any other
    verdict is returned as it is."""
    due = advance.kind is VerdictKind.ADVANCE or (at_end and advance.kind is VerdictKind.HOLD)
    if not due or not has_final_look(rollout):
        return advance
    plan = rollout.plan
    if rollout.final_look_at is not None:  # taken and passed at an earlier gate
        taken = FinalLook(at=rollout.final_look_at.isoformat(), share=plan.final_look_share)
        return _passed(advance, taken)
    gating = [g for g in plan.guardrails if not g.dry_run and g.source == "events"]
    looks = {
        g.key: fixed_horizon_test(result, plan.final_alpha(g.key) / _tests_in(g))
        for g in gating
        if (result := tests.get(g.key)) is not None
    }
    taken = FinalLook(
        at=now.isoformat(),
        share=plan.final_look_share,
        tests={
            key: FixedHorizonTest.model_validate(r, from_attributes=True)
            for key, r in looks.items()
        },
    )
    for index, guardrail in enumerate(plan.guardrails):
        look = looks.get(guardrail.key)
        if look is not None and look.regressed:
            evidence = advance.evidence.model_copy(update={"final_look": taken})
            return _regressed(rollout, data, (guardrail, index), look, evidence)
    return _passed(advance, taken)


def _tests_in(guardrail: Guardrail) -> int:
    """The tests a guardrail's result stands for: new_failures' is the least proven of its
    fingerprints', so its final look is at its share over them, as its boundary is."""
    return FAILURE_TESTS if guardrail.metric == NEW_FAILURES else 1


def _passed(advance: Verdict, taken: FinalLook) -> Verdict:
    if advance.kind is not VerdictKind.ADVANCE:  # a hold at the planned end: it still holds
        evidence = advance.evidence.model_copy(update={"final_look": taken})
        return dataclasses.replace(advance, evidence=evidence)
    reason = f"{advance.reason}, at its final look (fixed horizon)"
    evidence = advance.evidence.model_copy(update={"final_look": taken, "decided_by": "final_look"})
    return dataclasses.replace(advance, reason=reason, evidence=evidence)


def _regressed(
    rollout: Rollout,
    data: FlagAggregates,
    which: tuple[Guardrail, int],
    look: FixedHorizonResult,
    evidence: GateEvidence,
) -> Verdict:
    guardrail, index = which
    applied = action_for(
        rollout.plan.health_words,
        "guardrail_regression",
        guardrail=index,
        watching=rollout.watching,
    )
    # Shown two-sided at twice the look's level: its one-sided bound and its mirror.
    lower, upper = sorted((look.bound, 2 * look.delta - look.bound))
    baseline = control_baseline(guardrail, data.control)
    shown = quantity_text(guardrail.key, look.delta, lower, upper, baseline)
    why = f"{shown}, regressed at the stage's final look (fixed horizon, p = {look.p_value:.2g})"
    update = {"decided_by": "final_look", "breach": guardrail.key}
    return health.verdict(applied, why, evidence.model_copy(update=update))


def held_for_advice(verdict: Verdict) -> Verdict | None:
    """A hold that records ``verdict``'s final look, taken and passed at this gate, before
    the advisor is asked in the background; None when it took none. The look is then not
    taken again while the advice is awaited, nor by the re-check that applies it."""
    look = verdict.evidence.final_look
    if verdict.kind is not VerdictKind.ADVANCE or look is None or look.tests is None:
        return None
    return Verdict(VerdictKind.HOLD, "asking the advisor", None, verdict.evidence)


def looked(state: Rollout, event: GateInput) -> Rollout:
    """``state`` with its stage's final look recorded, when this verdict took it: a stage
    that waits after it (an advisor, an approval, a window) is not looked at again."""
    look = event.verdict.evidence.final_look
    if state.final_look_at is not None or look is None or look.tests is None:
        return state
    return state.model_copy(update={"final_look_at": event.now, "updated_at": event.now})
