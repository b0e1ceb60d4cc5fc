"""A gate's evidence, built once from its tests: what the decision publishes.

Pure. The parts are the typed ones of :mod:`controller.core.wire.evidence`,
written in the order the published JSON has always had.
"""

from __future__ import annotations

from typing import Literal

from controller.core.machine.sourced import Sourced
from controller.core.rollouts import Guardrail, Plan, Rollout, Stage
from controller.core.rules import to_text
from controller.core.stats import (
    NEW_FAILURES,
    OTHER_CONVERSIONS,
    OTHER_FAILURES,
    ArmAggregate,
    FailureTest,
    FlagAggregates,
    SequentialResult,
    SrmResult,
    Weighed,
    arm_latency,
    dominance,
    failure_tests,
    in_bucket,
    limit_parts,
    shown,
)
from controller.core.wire import (
    INSUFFICIENT,
    ArmLatency,
    ArmTally,
    AudienceRing,
    BothArms,
    CappedUnit,
    DominantUnit,
    DryRun,
    FailureSeen,
    GateEvidence,
    GuardrailTest,
    SrmCheck,
)


def gate_evidence(
    rollout: Rollout,
    data: FlagAggregates,
    tests: dict[str, SequentialResult | None],
    srm: SrmResult,
    *,
    sourced: Sourced,
    limits: dict[str, SequentialResult],
    heavy: Weighed | None = None,
) -> GateEvidence:
    """What the gate saw: each part written once, here, in the order it is published.
    ``heavy``: the units capped and the one deciding (:func:`~controller.core.stats.weighed`);
    the arms' tallies are as counted, each test's parts as it read them."""
    plan = rollout.plan
    heavy = heavy or Weighed(data)
    parts: dict[str, object] = {
        "arms": {name: _tally(plan, arm) for name, arm in _arms(data)},
        "alpha": plan.alpha_budget(),
        "flag_versions": [*sorted(data.versions)],
        "guardrails": {
            m: (
                _test(r, _dominant(plan, m, heavy, r), _caps(plan, m, heavy)) if r else INSUFFICIENT
            )
            for m, r in tests.items()
        },
        "srm": SrmCheck.model_validate(srm, from_attributes=True),
        "latency": {name: _latency(arm) for name, arm in _arms(data)},
    }
    if data.watched:  # the sample of units watched for being seen in both arms
        parts["both_arms"] = BothArms(units=data.both_arms, watched=data.watched_units)
    if plan.targeted:
        parts["audience"] = audience(rollout)
    if sourced.evidence is not None:
        parts["sources"] = sourced.evidence
    if sourced.budget is not None:
        parts["error_budget"] = sourced.budget
    if limits and plan.limits is not None:
        parts.update(limit_parts(plan.limits, limits))
    if any(g.dry_run for g in plan.guardrails):
        parts["dry_run"] = _dry_run(plan, tests)
    failures = failures_seen(plan, data)
    if failures:
        parts["failures"] = failures
    return GateEvidence.model_validate(parts)


FAILURES_SHOWN = 5
"""The failures by fingerprint an evidence names, the most telling first."""


def failures_seen(plan: Plan, data: FlagAggregates) -> list[FailureSeen]:
    """The fingerprints that differ most between the arms, tested as the plan's
    ``new_failures`` guardrail tests them (with none, at the plan's level for one test): those
    that regressed first, then by p-value, then by count; the failures no tested fingerprint
    names only where they regressed. Empty where no failure was named, and where an arm had no
    exposures: with no arm to compare (a stage at 100%), no failure is new in treatment."""
    t_exposed, c_exposed = data.treatment.exposures, data.control.exposures
    if not (t_exposed and c_exposed) or not (data.treatment.failed or data.control.failed):
        return []
    guardrail = next(
        (g for g in plan.guardrails if g.metric == NEW_FAILURES), Guardrail(metric=NEW_FAILURES)
    )
    tests = failure_tests(guardrail, data, plan, plan.alpha_for(guardrail.key))
    shown = [t for t in tests if t.key != OTHER_FAILURES or t.regressed]
    shown.sort(key=lambda t: (not t.regressed, _p_value(t), -(t.treatment + t.control)))
    return [
        FailureSeen(
            name=test.name,
            example=test.example,
            treatment=test.treatment,
            control=test.control,
            treatment_rate=test.treatment / t_exposed,
            control_rate=test.control / c_exposed,
            p_value=None if test.result is None else test.result.p_value,
            regressed=test.regressed,
        )
        for test in shown[:FAILURES_SHOWN]
    ]


def _p_value(test: FailureTest) -> float:
    return 1.0 if test.result is None else test.result.p_value


def _arms(data: FlagAggregates) -> tuple[tuple[str, ArmAggregate], ...]:
    return (("treatment", data.treatment), ("control", data.control))


def _test(
    result: SequentialResult,
    dominant: DominantUnit | None = None,
    caps: dict[str, object] | None = None,
) -> GuardrailTest:
    # Read from the result's fields (every one of them, as its evidence() gives them), its
    # infinities as floats: the same test as from its JSON-ready evidence, built faster.
    test = GuardrailTest.model_validate(result, from_attributes=True)
    update = {**({} if dominant is None else {"dominant": dominant}), **(caps or {})}
    return test.model_copy(update=update) if update else test


def _caps(plan: Plan, key: str, heavy: Weighed) -> dict[str, object] | None:
    """The error rate's cap and the units over it, where a cap applied."""
    cap = heavy.capping.cap
    guardrail = next((g for g in plan.guardrails if g.key == key), None)
    if cap is None or guardrail is None or guardrail.metric != "error_rate":
        return None
    parts: dict[str, object] = {"unit_cap": cap}
    if heavy.capping.units:
        parts["capped"] = [
            CappedUnit(
                arm=c.arm,
                unit=shown(c.unit, hashed=heavy.hashed),
                requests=c.requests,
                errors=c.errors,
            )
            for c in heavy.capping.units
        ]
    return parts


DOMINANCE_FROM = 2.0
"""A test's design effect from which the bucket carrying most of its variance is looked
for: below it no unit weighs much (and the gate saves the pass over its buckets)."""


def _dominant(
    plan: Plan, key: str, heavy: Weighed, result: SequentialResult
) -> DominantUnit | None:
    """The bucket of units deciding the guardrail's test, where one does, and the listed unit
    in it (its shares of the arm's requests and errors, as the test counted them)."""
    if result.design_effect is None or result.design_effect < DOMINANCE_FROM:
        return None
    guardrail = next((g for g in plan.guardrails if g.key == key), None)
    found = None if guardrail is None else dominance(guardrail, heavy.data)
    if found is None:
        return None
    arm: Literal["treatment", "control"] = "treatment" if found.arm == "treatment" else "control"
    unit = in_bucket(heavy.data, arm, found.bucket)
    dominant = DominantUnit(
        arm=arm, events_share=found.events_share, variance_share=found.variance_share
    )
    if unit is None:
        return dominant
    named = {
        "unit": shown(unit.unit, hashed=heavy.hashed),
        "requests_share": unit.requests_share,
        "errors_share": unit.errors_share,
    }
    return dominant.model_copy(update=named)


def _latency(arm: ArmAggregate) -> ArmLatency:
    return ArmLatency.model_validate(arm_latency(arm.latency_histogram))


def _tally(plan: Plan, arm: ArmAggregate) -> ArmTally:
    """The arm's counts; crashes, exceptions and named conversions only where it has them,
    so evidence without them is written as it always was."""
    counts: dict[str, object] = {
        "units": arm.units,
        "exposures": arm.exposures,
        "requests": arm.requests,
        "errors": arm.errors,
        "conversions": arm.conversions,
    }
    counts.update(
        {k: n for k, n in (("crashes", arm.crashes), ("exceptions", arm.exceptions)) if n}
    )
    named = _named(plan, arm)
    if named is not None:
        counts["named_conversions"] = named
    return ArmTally.model_validate(counts)


def _named(plan: Plan, arm: ArmAggregate) -> dict[str, int] | None:
    """The conversions of each name the plan's guardrails read (``named_conversions``), and of
    the names past the store's cap (:data:`OTHER_CONVERSIONS`) when there were any."""
    names = [g.conversion for g in plan.guardrails if g.conversion is not None]
    if not names:
        return None
    counts = {name: arm.converted(name).conversions for name in names}
    other = arm.named.get(OTHER_CONVERSIONS)
    if other is not None and other.count:
        counts[OTHER_CONVERSIONS] = other.count
    return counts


def audience(rollout: Rollout) -> AudienceRing:
    """Whom the stage's comparison is drawn from: its ring, within the rollout's audience."""
    plan, stage = rollout.plan, _stage(rollout)
    return AudienceRing(
        rollout=None if plan.audience is None else to_text(plan.audience),
        stage="everyone" if stage.audience is None else to_text(stage.audience),
        percent=stage.percent,
        compared="units in the stage's audience and in no earlier ring's",
    )


def _dry_run(plan: Plan, tests: dict[str, SequentialResult | None]) -> dict[str, DryRun]:
    """What each dry-run guardrail would have done (the action, or None)."""
    return {g.key: DryRun(would=_would(g, tests[g.key])) for g in plan.guardrails if g.dry_run}


def _would(guardrail: Guardrail, result: SequentialResult | None) -> str | None:
    return guardrail.action if result is not None and result.regressed else None


def _stage(rollout: Rollout) -> Stage:
    return rollout.plan.stages[rollout.stage]
