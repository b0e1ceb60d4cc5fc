"""The gate: a stage's aggregates and its plan → a verdict with evidence.

Pure. The order (docs/architecture.md, *The stage gate*; after GrowthBook's
ramp evaluator), the checks that protect users first, as they run continuously:

1. any guardrail regression → rollback (or as the plan's policy says);
   a metric is tested once each arm has ``min_metric_events`` events of it
   (a latency quantile also needs ``quantile_min_samples`` per arm), at the
   level :meth:`Plan.alpha_for`, the plan's alpha split over its
   guardrails and stages (each test: :mod:`~controller.core.stats.guardrails`), the error
   rate on each unit's requests capped (the plan's ``heavy_units``);
2. sample-ratio mismatch → pause (or as ``srm_action`` or the policy says);
   then units seen in both arms past the policy's ``both_arms_max_share`` of
   the stage's watched units (at least :data:`MIN_BOTH_ARMS` of them) → as the
   policy says (warn by default; see :mod:`~controller.core.stats.aggregates`);
3. evidence incomplete — a partition that can carry the flag's events held for an
   operator's choice, or not counted up to the stage's horizon — → hold, naming
   them (:mod:`~controller.core.rollouts.completeness`); a rollback above never
   waits for them, an advance or a completion below always does;
   then the minimum stage time not elapsed → hold;
4. no traffic in the stage → hold, then pause (or per the policy) after
   ``no_traffic_grace``; a trigger's verdict names it (:mod:`~controller.core.machine.health`);
5. fewer than ``min_units_per_arm`` units in either arm → hold;
6. any gating guardrail not yet tested (below its event floor in either arm,
   :func:`~controller.core.stats.guardrails.metric_floor`, or on requests one unit sends
   most of, :func:`~controller.core.stats.weighed`) → hold, naming what it
   waits for: inconclusive never promotes. A stage that stays so past its
   ``max_duration`` ends as the policy's ``inconclusive`` says (the machine's
   tick, :func:`~controller.core.machine.health.overdue`). A stage with no concurrent
   control (100% of its audience) has nothing to compare with and is gated on
   the plan's absolute limits instead;
7. otherwise advance, after the stage's final look (:mod:`.final_look`; the advisor, where
   enabled, may only make this more cautious: the machine's business, not the gate's).

With ``early_advance`` in the plan, step 3 gives way once every gating
guardrail's bound already excludes harm beyond its tolerance, the minimum
sample is met and there is no sample-ratio mismatch. A ``dry_run`` guardrail
is tested and recorded (the evidence's ``dry_run``) but never acts: what it would
have done is reported in :attr:`Verdict.dry_run_breaches` for the machine to
alert on, and it neither holds nor blocks an early advance.

Every verdict carries its evidence, typed (:class:`~controller.core.wire.GateEvidence`):
per-arm counts, each test and the SRM check, built once here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta

from controller.core.machine import health
from controller.core.machine.final_look import always_valid_level, final_look, has_final_look
from controller.core.machine.gate_evidence import audience, gate_evidence
from controller.core.machine.sourced import Sourced, sourced_tests
from controller.core.reading import completed_text, failure_text, harm_edge, quantity_text
from controller.core.rollouts import (
    Applied,
    Completeness,
    Guardrail,
    Plan,
    Rollout,
    Stage,
    Verdict,
    VerdictKind,
    action_for,
)
from controller.core.stats import (
    NEW_FAILURES,
    ArmAggregate,
    FlagAggregates,
    SequentialResult,
    SrmResult,
    control_baseline,
    guardrail_result,
    limit_tests,
    metric_events,
    metric_floor,
    srm_test,
    units_waiting,
    unproven,
    weighed,
    without_control,
)
from controller.core.wire import GateEvidence


def evaluate(
    rollout: Rollout,
    data: FlagAggregates,
    now: datetime,
    sourced: Sourced | None = None,
    completeness: Completeness | None = None,
) -> Verdict:
    """The verdict for ``rollout``'s current stage, given that stage's aggregates.

    ``sourced``: what its guardrails read from a metric source gave
    (:mod:`~controller.core.machine.sourced`); left out, a plan that reads one holds.
    ``completeness``: what ingest has counted of the partitions the stage's events can
    be on; left out, the evidence is taken as complete.
    """
    plan = rollout.plan
    heavy = weighed(plan, data)  # units capped; a guardrail one unit decides is held
    tests: dict[str, SequentialResult | None] = {
        g.key: None
        if g.key in heavy.held
        else guardrail_result(g, heavy.data, plan, alpha=always_valid_level(rollout, g))
        for g in plan.guardrails
        if g.source == "events"
    }
    if sourced is None:
        sourced = sourced_tests(rollout, None, now, max_age=timedelta(0))
    tests.update(sourced.tests)
    srm = srm_test(
        data.treatment.units,
        data.control.units,
        rollout.percent / 100,  # in a watch, 100% less the holdback
        p_threshold=plan.srm_p_threshold,
    )
    own_limits = _limits(rollout, data)
    evidence = gate_evidence(
        rollout, data, tests, srm, sourced=sourced, limits=own_limits, heavy=heavy
    )
    completeness = completeness or Completeness()
    evidence = _counted(evidence, completeness)
    limited = {**own_limits, **sourced.limits}
    breaches = tuple(m for m, said in (evidence.dry_run or {}).items() if said.would is not None)
    said = {**heavy.held, **sourced.waiting}
    waiting = (*untested(rollout, heavy.data, tests, said), *unproven(plan.limits, own_limits))
    verdict = _verdict(
        rollout,
        data,
        now,
        tests,
        srm=srm,
        evidence=evidence,
        limited=limited,
        sourced=sourced,
        completeness=completeness,
        waiting=waiting,
    )
    if not (breaches or waiting):
        return verdict
    return dataclasses.replace(verdict, dry_run_breaches=breaches, untested=waiting)


def _verdict(
    rollout: Rollout,
    data: FlagAggregates,
    now: datetime,
    tests: dict[str, SequentialResult | None],
    *,
    srm: SrmResult,
    evidence: GateEvidence,
    limited: dict[str, SequentialResult],
    sourced: Sourced,
    completeness: Completeness,
    waiting: tuple[str, ...],
) -> Verdict:
    plan = rollout.plan
    regressed = _regressed(rollout, data, tests, evidence, sourced)
    if regressed is not None:
        return regressed
    for name, result in limited.items():
        if result.regressed:
            applied = action_for(
                plan.health_words, "guardrail_regression", watching=rollout.watching
            )
            side = "above" if result.direction == "lower_is_better" else "below"
            why = (
                f"{name} {result.delta:.4g} is {side} its limit {result.tolerance:.4g} with no"
                f" concurrent control (bound {result.lower:.4g}, p = {result.p_value:.2g})"
            )
            return health.verdict(applied, why, _with(evidence, breach=name))
    if srm.flagged:
        why = (
            f"sample ratio mismatch: sequential p = {srm.sequential_p_value:.2g}"
            f" < {plan.srm_p_threshold} ({srm.observed_treatment} treatment units"
            f" against {srm.expected_treatment:.0f} expected)"
        )
        return health.verdict(action_for(plan.health_words, "sample_ratio_mismatch"), why, evidence)
    crossed = (
        health.both_arms(plan, data, evidence)
        or _unread(sourced, evidence)
        or _incomplete(completeness, evidence)
    )
    if crossed is not None:
        return crossed
    if _early(rollout, data, now, tests):
        why = (
            "early advance: every guardrail's bound excludes harm beyond its tolerance and the"
            f" minimum sample is met, before the minimum stage time {_stage(rollout).min_duration}"
        )
        return Verdict(VerdictKind.ADVANCE, why, None, _with(evidence, early_advance=True))
    verdict, untested_hold = _timing(
        rollout, data, now, evidence, sourced=sourced, waiting=waiting, tests=tests
    )
    return final_look(rollout, data, now, tests, verdict, at_end=untested_hold)


def _regressed(
    rollout: Rollout,
    data: FlagAggregates,
    tests: dict[str, SequentialResult | None],
    evidence: GateEvidence,
    sourced: Sourced,
) -> Verdict | None:
    """The first gating guardrail whose always-valid test shows harm, as its verdict."""
    plan = rollout.plan
    for index, guardrail in enumerate(plan.guardrails):
        result = tests[guardrail.key]
        if not guardrail.dry_run and result is not None and result.regressed:
            applied = action_for(
                plan.health_words,
                "guardrail_regression",
                guardrail=index,
                watching=rollout.watching,
            )
            baseline = sourced.baselines.get(
                guardrail.metric, control_baseline(guardrail, data.control)
            )
            if has_final_look(rollout):  # two tests could have decided: say which
                evidence = _with(evidence, decided_by="always_valid")
            return _regression(guardrail, result, evidence, baseline, applied)
    return None


def _counted(evidence: GateEvidence, completeness: Completeness) -> GateEvidence:
    """``evidence`` with the partitions it waits for, and those counted late, if any."""
    parts = {"incomplete": completeness.evidence(), "late": completeness.late_evidence()}
    given = {name: part for name, part in parts.items() if part is not None}
    return _with(evidence, **given) if given else evidence


def _incomplete(completeness: Completeness, evidence: GateEvidence) -> Verdict | None:
    """A hold while partitions of the evidence are held or lagging: never move on without them."""
    waiting = completeness.waiting()
    return None if waiting is None else Verdict(VerdictKind.HOLD, waiting, None, evidence)


def _unread(sourced: Sourced, evidence: GateEvidence) -> Verdict | None:
    """A hold while a metric source's reading is missing: never advance without it."""
    if not sourced.missing:
        return None
    return Verdict(VerdictKind.HOLD, "; ".join(sourced.missing), None, evidence)


def _limits(rollout: Rollout, data: FlagAggregates) -> dict[str, SequentialResult]:
    """At 100% of the audience, with limits: their tests."""
    plan = rollout.plan
    if plan.limits is None or rollout.percent < 100:
        return {}
    return limit_tests(plan.limits, data.treatment, alpha=plan.limit_alpha, n_tune=plan.n_tune)


def _stage(rollout: Rollout) -> Stage:
    return rollout.plan.stages[rollout.stage]


def _gating(plan: Plan) -> list[Guardrail]:
    """The guardrails that may act: every one not marked ``dry_run``."""
    return [g for g in plan.guardrails if not g.dry_run]


def _early(
    rollout: Rollout,
    data: FlagAggregates,
    now: datetime,
    tests: dict[str, SequentialResult | None],
) -> bool:
    """Strong evidence of no harm may end the stage before its minimum duration.

    Only with at least one gating guardrail: with none there is no evidence.
    """
    plan, stage = rollout.plan, _stage(rollout)
    gating = _gating(plan)
    if not (plan.early_advance and gating and now - rollout.stage_started_at < stage.min_duration):
        return False
    if min(data.treatment.units, data.control.units) < max(stage.min_units_per_arm, 1):
        return False
    return all(harm_excluded(tests[g.key]) for g in gating)


def harm_excluded(result: SequentialResult | None) -> bool:
    """The sequential bound shows any harm is within the tolerance (None: too little data):
    lower is better, the upper bound at most the tolerance; higher is better, the lower bound
    at least minus it. An infinite bound never does."""
    if result is None:
        return False
    if result.direction == "lower_is_better":
        return result.upper <= result.tolerance
    return result.lower >= -result.tolerance


def _timing(
    rollout: Rollout,
    data: FlagAggregates,
    now: datetime,
    evidence: GateEvidence,
    *,
    sourced: Sourced,
    waiting: tuple[str, ...],
    tests: Mapping[str, SequentialResult | None],
) -> tuple[Verdict, bool]:
    """The verdict of the stage's time, traffic and size, and whether it is the hold for
    guardrails not yet tested (the stage's planned end is reached: its final look is due)."""
    plan, stage = rollout.plan, rollout.plan.stages[rollout.stage]
    elapsed = now - rollout.stage_started_at
    if elapsed < stage.min_duration:
        why = f"minimum stage time {stage.min_duration} not reached"
        return Verdict(VerdictKind.HOLD, why, None, evidence), False
    # No traffic is judged on the stage's own aggregates (its flag versions): when
    # stages become rings, the gate is handed the ring's, and this test holds as is.
    if _events(data.treatment) + _events(data.control) + sourced.traffic == 0:
        if elapsed >= plan.no_traffic_grace:
            ring = f" from {audience(rollout).stage}" if plan.targeted else ""
            why = f"no events in the stage{ring} for {elapsed}"
            return health.verdict(action_for(plan.health_words, "no_traffic"), why, evidence), False
        return Verdict(VerdictKind.HOLD, "no traffic yet", None, evidence), False
    if plan.limits is not None and rollout.percent >= 100:  # no control: the treated count
        fewest, arm = data.treatment.units, "treatment"
    else:
        fewest, arm = min(data.treatment.units, data.control.units), "the smaller arm"
    if fewest < stage.min_units_per_arm:
        why = f"{fewest} units in {arm}, {stage.min_units_per_arm} needed"
        return Verdict(VerdictKind.HOLD, why, None, evidence), False
    if waiting:  # the guardrails not yet tested (:func:`untested`)
        return Verdict(VerdictKind.HOLD, "; ".join(waiting), None, evidence), True
    return Verdict(VerdictKind.ADVANCE, _complete(rollout, tests), None, evidence), False


def untested(
    rollout: Rollout,
    data: FlagAggregates,
    tests: dict[str, SequentialResult | None],
    waiting: Mapping[str, str] | None = None,
) -> list[str]:
    """Why each gating guardrail is not yet tested in the stage; empty when all are.

    A stage with no concurrent control (100% of its audience, no holdback) compares
    nothing, so it waits on no guardrail here: the plan's limits gate it.
    """
    if rollout.percent >= 100:
        return []
    plan = rollout.plan
    gating = {g.key: g for g in _gating(plan) if tests[g.key] is None}
    said = waiting or {}
    return [said.get(key) or _waiting_for(g, data, plan) for key, g in gating.items()]


def _waiting_for(guardrail: Guardrail, data: FlagAggregates, plan: Plan) -> str:
    metric, read = guardrail.metric, data.converted(guardrail.conversion)
    floor = metric_floor(metric, plan)
    seen = {arm: metric_events(metric, getattr(read, arm)) for arm in ("treatment", "control")}
    arm = min(seen, key=lambda name: seen[name])
    if seen[arm] >= floor:  # enough events, too few units to say how they vary
        hashed = plan.heavy_units is not None and plan.heavy_units.unit_names == "hashed"
        return f"{guardrail.key} not yet tested: {units_waiting(guardrail, data, hashed=hashed)}"
    return f"{guardrail.key} not yet tested: {seen[arm]} of {floor} events in {arm}"


def _complete(rollout: Rollout, tests: Mapping[str, SequentialResult | None]) -> str:
    """The advance's reason: how the gating guardrails stood (:func:`completed_text`)."""
    if rollout.percent >= 100:
        return f"the stage is complete ({without_control(rollout.plan.limits)})"
    return completed_text({g.key: tests.get(g.key) for g in _gating(rollout.plan)})


def _events(arm: ArmAggregate) -> int:
    return arm.exposures + arm.requests + arm.conversions


def _regression(
    guardrail: Guardrail,
    result: SequentialResult,
    evidence: GateEvidence,
    baseline: float | None,
    applied: Applied,
) -> Verdict:
    # The numbers as every text writes them, on their side of the tolerance; the evidence
    # keeps them exact.
    limit = harm_edge(result.tolerance, result.direction)
    shown = quantity_text(
        guardrail.key, result.delta, result.lower, result.upper, baseline, limit=limit
    )
    why = f"{shown}, regressed (p = {result.p_value:.2g})"
    named = evidence.failures or []
    if guardrail.metric == NEW_FAILURES and named and named[0].regressed:
        why = f"{why}: {failure_text(named[0])}"
    return health.verdict(applied, why, _with(evidence, breach=guardrail.key))


def _with(evidence: GateEvidence, **parts: object) -> GateEvidence:
    """``evidence`` with ``parts`` added after the gate's own (``breach``, ``early_advance``)."""
    return evidence.model_copy(update=parts)
