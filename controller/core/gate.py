"""The gate: a stage's aggregates and its plan → a verdict with evidence.

Pure. The order (see docs/architecture.md, *The stage gate*; after
GrowthBook's ramp evaluator), with the
checks that protect users first because they run continuously, not only when
a stage is due:

1. any guardrail regression → rollback (or as the plan's policy says, #28);
   a metric is tested once each arm has ``min_metric_events`` events of it
   (a latency quantile also needs :func:`quantile_min_samples` per arm), at
   the level :attr:`Plan.alpha_per_test`, the plan's alpha split over its
   guardrails and stages;
2. sample-ratio mismatch → pause (or as ``srm_action`` or the policy says);
3. minimum stage time not elapsed → hold;
4. no traffic in the stage → hold, then pause (or per the policy) after
   ``no_traffic_grace``; a trigger's verdict names it (:mod:`~controller.core.health`);
5. fewer than ``min_units_per_arm`` units in either arm → hold;
6. otherwise advance (the advisor, where enabled, may only make this more
   cautious; that is the machine's business, not the gate's).

With ``early_advance`` in the plan, step 3 gives way once every gating
guardrail's bound already excludes harm beyond its tolerance, the minimum
sample is met and there is no sample-ratio mismatch. A ``dry_run`` guardrail
is tested and recorded (``evidence["dry_run"]``) but never acts: what it would
have done is reported in :attr:`Verdict.dry_run_breaches` for the machine to
alert on, and it neither holds nor blocks an early advance.

Every verdict carries the evidence it was reached on: per-arm counts, each
guardrail's test (Δ, bounds, p-value) and the SRM check.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from controller.core import health
from controller.core.aggregates import ArmAggregate, FlagAggregates
from controller.core.latency import (
    exceedance_bucket,
    exceedance_test,
    latency_quantile_test,
    quantile_min_samples,
)
from controller.core.plan import Guardrail, Plan, Stage
from controller.core.policy import Applied, for_plan
from controller.core.rollout import Rollout, Verdict, VerdictKind
from controller.core.sequential import SequentialResult, mean_test, proportion_test
from controller.core.srm import SrmResult, srm_test
from controller.core.views import RolloutView
from controller.core.wording import quantity_text, stage_position

QUANTILES = {"latency_p95": 0.95, "latency_p99": 0.99}


def evaluate(rollout: Rollout, data: FlagAggregates, now: datetime) -> Verdict:
    """The verdict for ``rollout``'s current stage, given that stage's aggregates."""
    plan = rollout.plan
    tests: dict[str, SequentialResult | None] = {
        g.metric: guardrail_result(g, data, plan) for g in plan.guardrails
    }
    srm = srm_test(
        data.treatment.units,
        data.control.units,
        rollout.percent / 100,  # in a watch, 100% less the holdback
        p_threshold=plan.srm_p_threshold,
    )
    evidence = _evidence(plan, data, tests, srm)
    breaches = _dry_run(plan, tests, evidence)
    verdict = _verdict(rollout, data, now, tests, srm=srm, evidence=evidence)
    return dataclasses.replace(verdict, dry_run_breaches=breaches) if breaches else verdict


def _verdict(
    rollout: Rollout,
    data: FlagAggregates,
    now: datetime,
    tests: dict[str, SequentialResult | None],
    *,
    srm: SrmResult,
    evidence: dict[str, Any],
) -> Verdict:
    plan = rollout.plan
    for index, guardrail in enumerate(plan.guardrails):
        result = tests[guardrail.metric]
        if not guardrail.dry_run and result is not None and result.regressed:
            applied = for_plan(
                plan, "guardrail_regression", guardrail=index, watching=rollout.watching
            )
            baseline = _baseline(guardrail, data.control)
            return _regression(guardrail, result, evidence, baseline, applied)
    if srm.flagged:
        why = (
            f"sample ratio mismatch: sequential p = {srm.sequential_p_value:.2g}"
            f" < {plan.srm_p_threshold} ({srm.observed_treatment} treatment units"
            f" against {srm.expected_treatment:.0f} expected)"
        )
        return health.verdict(for_plan(plan, "sample_ratio_mismatch"), why, evidence)
    if _early(rollout, data, now, tests):
        why = (
            "early advance: every guardrail's bound excludes harm beyond its tolerance and the"
            f" minimum sample is met, before the minimum stage time {_stage(rollout).min_duration}"
        )
        return Verdict(VerdictKind.ADVANCE, why, None, {**evidence, "early_advance": True})
    return _timing(rollout, data, now, evidence)


def _stage(rollout: Rollout) -> Stage:
    return rollout.plan.stages[rollout.stage]


def _gating(plan: Plan) -> list[Guardrail]:
    """The guardrails that may act: every one not marked ``dry_run``."""
    return [g for g in plan.guardrails if not g.dry_run]


def _dry_run(
    plan: Plan, tests: dict[str, SequentialResult | None], evidence: dict[str, Any]
) -> tuple[str, ...]:
    """Record each dry-run guardrail in ``evidence``; the metrics that would have acted."""
    trial = [g for g in plan.guardrails if g.dry_run]
    if not trial:
        return ()
    would = {g.metric: _would(g, tests[g.metric]) for g in trial}
    evidence["dry_run"] = {m: {"would": action} for m, action in would.items()}
    return tuple(m for m, action in would.items() if action is not None)


def _would(guardrail: Guardrail, result: SequentialResult | None) -> str | None:
    return guardrail.action if result is not None and result.regressed else None


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
    return all(harm_excluded(tests[g.metric]) for g in gating)


def harm_excluded(result: SequentialResult | None) -> bool:
    """The sequential bound shows any harm is within the tolerance (None: too little data).

    Lower is better: the upper bound is at most the tolerance; higher is better:
    the lower bound is at least minus the tolerance. An infinite bound never does.
    """
    if result is None:
        return False
    if result.direction == "lower_is_better":
        return result.upper <= result.tolerance
    return result.lower >= -result.tolerance


def _timing(
    rollout: Rollout, data: FlagAggregates, now: datetime, evidence: dict[str, Any]
) -> Verdict:
    plan, stage = rollout.plan, rollout.plan.stages[rollout.stage]
    elapsed = now - rollout.stage_started_at
    if elapsed < stage.min_duration:
        return Verdict(
            VerdictKind.HOLD, f"minimum stage time {stage.min_duration} not reached", None, evidence
        )
    if _events(data.treatment) + _events(data.control) == 0:
        if elapsed >= plan.no_traffic_grace:
            why = f"no events in the stage for {elapsed}"
            return health.verdict(for_plan(plan, "no_traffic"), why, evidence)
        return Verdict(VerdictKind.HOLD, "no traffic yet", None, evidence)
    fewest = min(data.treatment.units, data.control.units)
    if fewest < stage.min_units_per_arm:
        why = f"{fewest} units in the smaller arm, {stage.min_units_per_arm} needed"
        return Verdict(VerdictKind.HOLD, why, None, evidence)
    return Verdict(VerdictKind.ADVANCE, "guardrails hold and the stage is complete", None, evidence)


def guardrail_result(
    guardrail: Guardrail, data: FlagAggregates, plan: Plan
) -> SequentialResult | None:
    """The guardrail's sequential test, or None while its metric has too little data.

    Too little is fewer than ``min_metric_events`` of the metric in either arm
    (the smaller arm is what limits what can be said), and for a quantile also
    fewer requests than bound it (:func:`metric_floor`).
    """
    t, c, metric = data.treatment, data.control, guardrail.metric
    if min(_metric_events(metric, t), _metric_events(metric, c)) < metric_floor(metric, plan):
        return None
    if metric in QUANTILES:
        return _quantile_result(guardrail, t, c, plan)
    if metric == "latency_exceedance":
        return _exceedance_result(guardrail, t, c, plan)
    if metric == "conversion_value":
        return _value_result(guardrail, t, c, plan)
    return _proportion_result(guardrail, t, c, plan)


def metric_floor(metric: str, plan: Plan) -> int:
    """Events of ``metric`` each arm needs before it is tested.

    ``min_metric_events``, and for p95/p99 at least the requests whose
    order-statistic interval of the quantile lies inside the sample (73 for
    p95, 381 for p99): with fewer, an arm cannot bound its quantile.
    """
    if metric in QUANTILES:
        return max(plan.min_metric_events, quantile_min_samples(QUANTILES[metric]))
    return plan.min_metric_events


def _quantile_result(
    guardrail: Guardrail, t: ArmAggregate, c: ArmAggregate, plan: Plan
) -> SequentialResult:
    return latency_quantile_test(
        t.latency_histogram,
        c.latency_histogram,
        QUANTILES[guardrail.metric],
        relative_tolerance=guardrail.tolerance if guardrail.relative else 0.0,
        alpha=plan.alpha_per_test,
        n_tune=plan.n_tune,
    )


def _exceedance_result(
    guardrail: Guardrail, t: ArmAggregate, c: ArmAggregate, plan: Plan
) -> SequentialResult:
    assert guardrail.edge_ms is not None  # the plan model guarantees it
    return exceedance_test(
        t.latency_histogram,
        c.latency_histogram,
        guardrail.edge_ms,
        tolerance=_absolute(guardrail, _exceedance_share(c, guardrail.edge_ms)),
        alpha=plan.alpha_per_test,
        n_tune=plan.n_tune,
    )


def _value_result(
    guardrail: Guardrail, t: ArmAggregate, c: ArmAggregate, plan: Plan
) -> SequentialResult:
    return mean_test(
        t.conversion_value_sum,
        t.conversion_value_sq,
        t.conversion_values,
        c.conversion_value_sum,
        c.conversion_value_sq,
        c.conversion_values,
        direction="higher_is_better",
        tolerance=_absolute(guardrail, _rate(c.conversion_value_sum, c.conversion_values)),
        alpha=plan.alpha_per_test,
        n_tune=plan.n_tune,
    )


def _proportion_result(
    guardrail: Guardrail, t: ArmAggregate, c: ArmAggregate, plan: Plan
) -> SequentialResult:
    successes_t, n_t, successes_c, n_c = _proportion_counts(guardrail.metric, t, c)
    return proportion_test(
        successes_t,
        n_t,
        successes_c,
        n_c,
        direction="lower_is_better" if guardrail.lower_is_better else "higher_is_better",
        tolerance=_absolute(guardrail, _rate(successes_c, n_c)),
        alpha=plan.alpha_per_test,
        n_tune=plan.n_tune,
    )


def _proportion_counts(metric: str, t: ArmAggregate, c: ArmAggregate) -> tuple[int, int, int, int]:
    if metric == "error_rate":
        return t.errors, t.requests, c.errors, c.requests
    # Conversion rate: conversions per exposure, capped at one per exposure.
    return (
        min(t.conversions, t.exposures),
        t.exposures,
        min(c.conversions, c.exposures),
        c.exposures,
    )


def _metric_events(metric: str, arm: ArmAggregate) -> int:
    if metric == "error_rate":
        return arm.requests
    if metric == "conversion_rate":
        return arm.exposures
    if metric == "conversion_value":
        return arm.conversion_values
    return arm.latency_count


def _absolute(guardrail: Guardrail, control_value: float) -> float:
    return guardrail.tolerance * abs(control_value) if guardrail.relative else guardrail.tolerance


def _exceedance_share(arm: ArmAggregate, edge_ms: float) -> float:
    above = sum(arm.latency_histogram[exceedance_bucket(edge_ms) :])
    return _rate(above, arm.latency_count)


def _rate(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _events(arm: ArmAggregate) -> int:
    return arm.exposures + arm.requests + arm.conversions


def _baseline(guardrail: Guardrail, control: ArmAggregate) -> float | None:
    """The control's share a rate's relative lift is taken against; None for other metrics."""
    if guardrail.metric == "latency_exceedance" and guardrail.edge_ms is not None:
        return _exceedance_share(control, guardrail.edge_ms)
    if guardrail.metric in ("error_rate", "conversion_rate"):
        _, _, successes, n = _proportion_counts(guardrail.metric, control, control)
        return _rate(successes, n)
    return None


def _regression(
    guardrail: Guardrail,
    result: SequentialResult,
    evidence: dict[str, Any],
    baseline: float | None,
    applied: Applied,
) -> Verdict:
    # The numbers as every text writes them; the evidence keeps them exact.
    shown = quantity_text(guardrail.metric, result.delta, result.lower, result.upper, baseline)
    why = f"{shown}, regressed (p = {result.p_value:.2g})"
    return health.verdict(applied, why, {**evidence, "breach": guardrail.metric})


def _evidence(
    plan: Plan, data: FlagAggregates, tests: dict[str, SequentialResult | None], srm: SrmResult
) -> dict[str, Any]:
    arms = {
        name: {
            "units": arm.units,
            "exposures": arm.exposures,
            "requests": arm.requests,
            "errors": arm.errors,
            "conversions": arm.conversions,
        }
        for name, arm in (("treatment", data.treatment), ("control", data.control))
    }
    return {
        "arms": arms,
        "alpha": plan.alpha_budget(),
        "flag_versions": sorted(data.versions),
        "guardrails": {m: (r.evidence() if r else "insufficient data") for m, r in tests.items()},
        "srm": srm.evidence(),
    }


def describe(rollout: Rollout, verdict: Verdict | None, now: datetime) -> RolloutView:
    """A rollout's state for people and dashboards: where it is and what the gate sees.

    ``verdict`` is the gate's current view of the stage (None once the rollout
    finished); its evidence carries the per-arm counts and the guardrail bounds.
    """
    stage = rollout.plan.stages[rollout.stage]
    fields = {
        "flag": rollout.flag,
        "rollout_id": rollout.rollout_id,
        "plan": rollout.plan.name,
        "phase": rollout.phase.value,
        "pause_reason": rollout.pause_reason.value if rollout.pause_reason else None,
        "stage": rollout.stage,
        "stages": len(rollout.plan.stages),
        "at_stage": stage_position(rollout),
        "stage_percents": [s.percent for s in rollout.plan.stages],
        "percent": rollout.percent,
        "flag_version": rollout.flag_version,
        "started_at": rollout.started_at.isoformat(),
        "stage_started_at": rollout.stage_started_at.isoformat(),
        "watch_until": rollout.watch_until.isoformat() if rollout.watch_until else None,
        "window_wait": rollout.window_wait,
        "time_in_stage_s": round((now - rollout.stage_started_at).total_seconds(), 1),
        "min_duration_s": stage.min_duration.total_seconds(),
        "min_units_per_arm": stage.min_units_per_arm,
        "verdict": None if verdict is None else verdict.kind.value,
        "verdict_reason": None if verdict is None else verdict.reason,
        "evidence": {} if verdict is None else verdict.evidence,
    }
    return RolloutView.model_validate(fields)
