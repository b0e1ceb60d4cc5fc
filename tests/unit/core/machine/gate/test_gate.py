"""The gate, as a table: aggregates + plan + time -> verdict, in the order of
docs/architecture.md, *The stage gate*."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from controller.core.common.histogram import BUCKET_COUNT, bucket_of
from controller.core.machine.gate import evaluate, harm_excluded
from controller.core.rollouts import HealthPolicy
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.rollouts.policy import PauseReason
from controller.core.rollouts.rollout import Phase, Rollout, VerdictKind
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.stats.sequential import proportion_test
from tests.support.documents import as_read

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def plan(**changes: object) -> Plan:
    base = Plan(
        stages=[
            Stage(percent=10, min_duration=timedelta(minutes=30), min_units_per_arm=1000),
            Stage(percent=100, min_duration=timedelta(0)),
        ],
        guardrails=[
            Guardrail(metric="error_rate"),
            Guardrail(metric="latency_p99", tolerance=0.10, relative=True),
            Guardrail(metric="conversion_rate"),
        ],
        no_traffic_grace=timedelta(minutes=45),
        # The always-valid boundary alone, at each test's whole level: the final look has
        # tests of its own (test_final_look.py).
        final_look_share=0,
    )
    return base.model_copy(update=changes)


def rollout(p: Plan | None = None) -> Rollout:
    return Rollout(
        flag="f",
        rollout_id="r",
        plan=p or plan(),
        phase=Phase.RUNNING,
        stage=0,
        stage_started_at=T0,
        salt="s",
        flag_version=1,
        stage_versions={0: [1]},
        started_at=T0,
        updated_at=T0,
    )


def hist(latency_ms: float, n: int) -> tuple[int, ...]:
    counts = [0] * BUCKET_COUNT
    counts[bucket_of(latency_ms)] = n
    return tuple(counts)


def arm(
    units: int = 10_000,
    requests: int = 100_000,
    errors: int = 500,
    latency: float = 20.0,
    exposures: int = 50_000,
    conversions: int = 5_000,
) -> ArmAggregate:
    return ArmAggregate(
        exposures=exposures,
        units=units,
        requests=requests,
        errors=errors,
        latency_count=requests,
        latency_sum_ms=latency * requests,
        latency_histogram=hist(latency, requests),
        conversions=conversions,
    )


def data(t: ArmAggregate, c: ArmAggregate) -> FlagAggregates:
    return FlagAggregates(flag="f", versions=frozenset({1}), treatment=t, control=c)


HEALTHY = data(arm(units=1_111), arm(units=10_000))
LATE = T0 + timedelta(hours=1)
EARLY = T0 + timedelta(minutes=5)
EMPTY = data(ArmAggregate(), ArmAggregate())


@pytest.mark.parametrize(
    ("case", "agg", "now", "the_plan", "kind", "pause"),
    [
        ("healthy and due", HEALTHY, LATE, None, VerdictKind.ADVANCE, None),
        ("healthy, too early", HEALTHY, EARLY, None, VerdictKind.HOLD, None),
        (
            "error regression before min time",
            data(arm(units=1_111, errors=650), arm()),
            EARLY,
            None,
            VerdictKind.ROLLBACK,
            None,
        ),
        (
            "error regression, pause guardrail",
            data(arm(units=1_111, errors=650), arm()),
            LATE,
            plan(guardrails=[Guardrail(metric="error_rate", action="pause")]),
            VerdictKind.PAUSE,
            PauseReason.GUARDRAIL,
        ),
        (
            "error regression within tolerance",
            data(arm(units=1_111, errors=650), arm()),
            LATE,
            plan(guardrails=[Guardrail(metric="error_rate", tolerance=0.01)]),
            VerdictKind.ADVANCE,
            None,
        ),
        (
            "p99 latency doubled",
            data(arm(units=1_111, latency=40.0), arm()),
            EARLY,
            None,
            VerdictKind.ROLLBACK,
            None,
        ),
        (
            "p99 latency +5% within 10%",
            data(arm(units=1_111, latency=21.0), arm()),
            LATE,
            None,
            VerdictKind.ADVANCE,
            None,
        ),
        (
            "conversions halved",
            data(arm(units=1_111, conversions=2_500), arm()),
            EARLY,
            None,
            VerdictKind.ROLLBACK,
            None,
        ),
        (
            "too few requests to test: inconclusive never promotes",
            data(arm(units=1_111, requests=100, errors=50), arm(requests=100, errors=0)),
            LATE,
            plan(guardrails=[Guardrail(metric="error_rate")]),
            VerdictKind.HOLD,
            None,
        ),
        (
            "every gating guardrail tested",
            data(arm(units=1_111, requests=200, errors=2), arm(requests=200, errors=2)),
            LATE,
            plan(guardrails=[Guardrail(metric="error_rate")]),
            VerdictKind.ADVANCE,
            None,
        ),
        (
            "only a dry-run guardrail untested",
            data(arm(units=1_111, requests=100, errors=50), arm(requests=100, errors=0)),
            LATE,
            plan(guardrails=[Guardrail(metric="error_rate", dry_run=True)]),
            VerdictKind.ADVANCE,
            None,
        ),
        (
            "p99 needs its own floor beyond min_metric_events",
            data(arm(units=1_111, requests=300, latency=300), arm(requests=300, latency=300)),
            LATE,
            plan(guardrails=[Guardrail(metric="latency_p99")]),
            VerdictKind.HOLD,
            None,
        ),
        (
            "srm at a 10% stage",
            data(arm(units=9_000), arm(units=91_000)),
            EARLY,
            None,
            VerdictKind.PAUSE,
            PauseReason.SRM,
        ),
        (
            "srm, plan says rollback",
            data(arm(units=9_000), arm(units=91_000)),
            EARLY,
            plan(srm_action="rollback"),
            VerdictKind.ROLLBACK,
            None,
        ),
        ("no traffic yet", EMPTY, T0 + timedelta(minutes=40), None, VerdictKind.HOLD, None),
        (
            "no traffic past the grace",
            EMPTY,
            T0 + timedelta(minutes=46),
            None,
            VerdictKind.PAUSE,
            PauseReason.NO_TRAFFIC,
        ),
        (
            "too few units",
            data(arm(units=900), arm(units=8_100)),
            LATE,
            None,
            VerdictKind.HOLD,
            None,
        ),
    ],
)
def test_gate(
    case: str,
    agg: FlagAggregates,
    now: datetime,
    the_plan: Plan | None,
    kind: VerdictKind,
    pause: PauseReason | None,
) -> None:
    verdict = evaluate(rollout(the_plan), agg, now)
    assert verdict.kind is kind, f"{case}: {verdict.reason}"
    assert verdict.pause_reason is pause
    assert verdict.reason


def test_rollback_evidence_names_the_breach_and_its_bounds() -> None:
    # One guardrail and one compared stage: the test runs at the plan's whole alpha,
    # so the bound is the worked example of docs/architecture.md.
    alone = plan(guardrails=[Guardrail(metric="error_rate")])
    verdict = evaluate(rollout(alone), data(arm(units=1_111, errors=650), arm()), EARLY)
    ev = as_read(verdict.evidence)
    assert ev["breach"] == "error_rate"
    error = ev["guardrails"]["error_rate"]
    assert error["lower"] == pytest.approx(4.20292846e-4, abs=1e-9)
    assert error["regressed"] is True
    assert ev["arms"]["treatment"]["errors"] == 650
    assert ev["srm"]["flagged"] is False
    # People read the numbers in percentage points with the lift; the evidence stays exact.
    assert re.fullmatch(
        r"error rate \+[\d.]+ pp \[\+[\d.]+, \+[\d.]+\] \(\+[\d,.]+%\), regressed \(p = .+\)",
        verdict.reason,
    ), verdict.reason


def test_alpha_is_split_over_guardrails_and_compared_stages() -> None:
    verdict = evaluate(rollout(), data(arm(units=1_111, errors=650), arm()), EARLY)
    # Three guardrails, one stage below 100%: each test at 0.05 / 3.
    assert as_read(verdict.evidence)["alpha"] == {
        "rollout": 0.05,
        "guardrails": 3,
        "stages": 1,
        "per_test": pytest.approx(0.05 / 3),
    }
    error = as_read(verdict.evidence)["guardrails"]["error_rate"]
    assert error["alpha"] == pytest.approx(0.05 / 3)
    assert error["p_value"] < error["alpha"]
    assert error["lower"] < 4.20292846e-4, "a smaller level widens the bound"


def test_insufficient_data_is_recorded_as_such() -> None:
    tiny = data(arm(units=1_111, requests=10, errors=0), arm(requests=10, errors=0))
    verdict = evaluate(rollout(), tiny, LATE)
    assert as_read(verdict.evidence)["guardrails"]["error_rate"] == "insufficient data"


# -- early advance and dry-run guardrails --------------------------------------------

TOLERANT = [
    Guardrail(metric="error_rate", tolerance=0.002),
    Guardrail(metric="latency_p99", tolerance=0.10, relative=True),
    Guardrail(metric="conversion_rate", tolerance=0.01),
]
EARLY_PLAN = plan(early_advance=True, guardrails=TOLERANT)
TRIAL = Guardrail(metric="error_rate", dry_run=True)
SMALL = data(
    arm(units=1_111, requests=2_000, errors=10, exposures=2_000, conversions=200),
    arm(requests=2_000, errors=10, exposures=2_000, conversions=200),
)


@pytest.mark.parametrize(
    ("case", "agg", "now", "the_plan", "kind", "early"),
    [
        ("strong evidence, early", HEALTHY, EARLY, EARLY_PLAN, VerdictKind.ADVANCE, True),
        ("option off", HEALTHY, EARLY, plan(guardrails=TOLERANT), VerdictKind.HOLD, False),
        ("due anyway: a plain advance", HEALTHY, LATE, EARLY_PLAN, VerdictKind.ADVANCE, False),
        (
            "a zero tolerance is never shown",
            HEALTHY,
            EARLY,
            plan(early_advance=True),
            VerdictKind.HOLD,
            False,
        ),
        ("bounds too wide on a small sample", SMALL, EARLY, EARLY_PLAN, VerdictKind.HOLD, False),
        (
            "too few units per arm",
            data(arm(units=900), arm(units=8_100)),
            EARLY,
            EARLY_PLAN,
            VerdictKind.HOLD,
            False,
        ),
        (
            "a metric under the data floor",
            HEALTHY,
            EARLY,
            EARLY_PLAN.model_copy(update={"min_metric_events": 200_000}),
            VerdictKind.HOLD,
            False,
        ),
        (
            "srm pauses, never advances",
            data(arm(units=9_000), arm(units=91_000)),
            EARLY,
            EARLY_PLAN,
            VerdictKind.PAUSE,
            False,
        ),
        (
            "only dry-run guardrails: no evidence",
            HEALTHY,
            EARLY,
            plan(early_advance=True, guardrails=[TOLERANT[0].model_copy(update={"dry_run": True})]),
            VerdictKind.HOLD,
            False,
        ),
        (
            "a dry-run guardrail does not block it",
            HEALTHY,
            EARLY,
            plan(early_advance=True, guardrails=[*TOLERANT[1:], TRIAL]),
            VerdictKind.ADVANCE,
            True,
        ),
    ],
)
def test_early_advance(
    case: str,
    agg: FlagAggregates,
    now: datetime,
    the_plan: Plan,
    kind: VerdictKind,
    early: bool,
) -> None:
    verdict = evaluate(rollout(the_plan), agg, now)
    assert verdict.kind is kind, f"{case}: {verdict.reason}"
    assert as_read(verdict.evidence).get("early_advance", False) is early
    assert verdict.reason.startswith("early advance") is early


def test_harm_excluded_by_direction() -> None:
    lower = proportion_test(50, 10_000, 50, 10_000, direction="lower_is_better", tolerance=0.01)
    higher = proportion_test(50, 10_000, 50, 10_000, direction="higher_is_better", tolerance=0.01)
    tight = proportion_test(50, 10_000, 50, 10_000, direction="lower_is_better", tolerance=0.0)
    worse = proportion_test(150, 10_000, 50, 10_000, direction="higher_is_better", tolerance=0.01)
    assert harm_excluded(lower)
    assert harm_excluded(higher)
    assert not harm_excluded(tight)
    assert harm_excluded(worse), "more of a higher-is-better metric is no harm"
    assert not harm_excluded(None)


REGRESSED = data(arm(units=1_111, errors=650), arm())
LATENCY = Guardrail(metric="latency_p99", tolerance=0.10, relative=True)


@pytest.mark.parametrize(
    ("case", "agg", "now", "guardrails", "kind", "breaches", "would"),
    [
        (
            "regression, due",
            REGRESSED,
            LATE,
            [TRIAL, LATENCY],
            VerdictKind.ADVANCE,
            ("error_rate",),
            "rollback",
        ),
        (
            "regression, too early",
            REGRESSED,
            EARLY,
            [TRIAL],
            VerdictKind.HOLD,
            ("error_rate",),
            "rollback",
        ),
        (
            "a pause guardrail would pause",
            REGRESSED,
            LATE,
            [TRIAL.model_copy(update={"action": "pause"})],
            VerdictKind.ADVANCE,
            ("error_rate",),
            "pause",
        ),
        ("healthy", HEALTHY, LATE, [TRIAL], VerdictKind.ADVANCE, (), None),
        (
            "a gating guardrail still acts",
            data(arm(units=1_111, errors=650, latency=40.0), arm()),
            EARLY,
            [TRIAL, LATENCY],
            VerdictKind.ROLLBACK,
            ("error_rate",),
            "rollback",
        ),
    ],
)
def test_dry_run_guardrail_never_acts(
    case: str,
    agg: FlagAggregates,
    now: datetime,
    guardrails: list[Guardrail],
    kind: VerdictKind,
    breaches: tuple[str, ...],
    would: str | None,
) -> None:
    verdict = evaluate(rollout(plan(guardrails=guardrails)), agg, now)
    assert verdict.kind is kind, f"{case}: {verdict.reason}"
    assert verdict.dry_run_breaches == breaches
    assert as_read(verdict.evidence)["dry_run"] == {"error_rate": {"would": would}}
    assert isinstance(as_read(verdict.evidence)["guardrails"]["error_rate"], dict)
    assert as_read(verdict.evidence).get("breach") != "error_rate"


def test_without_dry_run_guardrails_the_evidence_has_no_dry_run_key() -> None:
    verdict = evaluate(rollout(), HEALTHY, LATE)
    assert "dry_run" not in as_read(verdict.evidence)
    assert verdict.dry_run_breaches == ()


@pytest.mark.parametrize(
    ("case", "agg", "the_plan", "reason"),
    [
        (
            "the smaller arm is named with its count and the floor",
            data(arm(units=1_111, requests=100, errors=50), arm(requests=400, errors=0)),
            plan(guardrails=[Guardrail(metric="error_rate")]),
            "error_rate not yet tested: 100 of 150 events in treatment",
        ),
        (
            "each untested guardrail is named",
            data(arm(units=1_111, requests=200, latency=5), arm(requests=120, exposures=90)),
            plan(guardrails=[Guardrail(metric="error_rate"), Guardrail(metric="conversion_rate")]),
            "error_rate not yet tested: 120 of 150 events in control;"
            " conversion_rate not yet tested: 90 of 150 events in control",
        ),
        (
            "two guardrails on one metric are named once",
            data(arm(units=1_111, requests=100), arm(requests=400)),
            plan(guardrails=[Guardrail(metric="error_rate"), Guardrail(metric="error_rate")]),
            "error_rate not yet tested: 100 of 150 events in treatment",
        ),
        (
            "p99's floor is the order statistic's, above min_metric_events",
            data(arm(units=1_111, requests=300), arm(requests=300)),
            plan(guardrails=[Guardrail(metric="latency_p99")]),
            "latency_p99 not yet tested: 300 of 381 events in treatment",
        ),
    ],
)
def test_untested_hold_says_what_it_waits_for(
    case: str, agg: FlagAggregates, the_plan: Plan, reason: str
) -> None:
    verdict = evaluate(rollout(the_plan), agg, LATE)
    assert verdict.kind is VerdictKind.HOLD, case
    assert verdict.reason == reason, case
    assert "guardrails hold" not in verdict.reason


@pytest.mark.parametrize(
    ("case", "the_plan", "percent", "reason"),
    [
        (
            "every guardrail holds",
            plan(guardrails=[Guardrail(metric="error_rate", tolerance=0.01), LATENCY]),
            10.0,
            "guardrails hold and the stage is complete"
            " (held, harm excluded: error_rate, latency_p99)",
        ),
        (
            "some undecided: named, never said to hold",
            plan(),
            10.0,
            "the stage is complete (held, harm excluded: latency_p99;"
            " advanced undecided, harm not excluded: error_rate, conversion_rate)",
        ),
        (
            "none holds",
            plan(guardrails=[Guardrail(metric="error_rate")]),
            10.0,
            "the stage is complete (advanced undecided, harm not excluded: error_rate)",
        ),
        ("no guardrail", plan(guardrails=[]), 10.0, "the stage is complete (no gating guardrail)"),
        (
            "only dry runs",
            plan(guardrails=[Guardrail(metric="error_rate", dry_run=True)]),
            10.0,
            "the stage is complete (no gating guardrail)",
        ),
    ],
)
def test_advance_reason_never_claims_untested_guardrails(
    case: str, the_plan: Plan, percent: float, reason: str
) -> None:
    verdict = evaluate(rollout(the_plan), HEALTHY, LATE)
    assert verdict.kind is VerdictKind.ADVANCE, f"{case}: {verdict.reason}"
    assert verdict.reason == reason, case


def _on_time(**changes: object) -> Plan:
    """Everyone for ten minutes, no guardrails, no unit floor: the example pipeline's dev."""
    stage = Stage(percent=100, min_duration=timedelta(minutes=10), min_units_per_arm=0)
    return plan(stages=[stage], guardrails=[], **changes)


ONE_EXPOSURE = data(ArmAggregate(exposures=1, units=1), ArmAggregate())
# (what, the stage's aggregates, now, the plan, the verdict, its pause reason)
ON_TIME: list[tuple[str, FlagAggregates, datetime, Plan, VerdictKind, PauseReason | None]] = [
    ("one event, past its minimum time", ONE_EXPOSURE, T0 + timedelta(minutes=11), _on_time(),
     VerdictKind.ADVANCE, None),
    ("one event, before its minimum time", ONE_EXPOSURE, T0 + timedelta(minutes=9), _on_time(),
     VerdictKind.HOLD, None),
    ("no event, past its minimum time", EMPTY, T0 + timedelta(minutes=11), _on_time(),
     VerdictKind.HOLD, None),
    ("no event, past the grace", EMPTY, T0 + timedelta(minutes=46), _on_time(),
     VerdictKind.PAUSE, PauseReason.NO_TRAFFIC),
    ("no event, past the grace, no_traffic warns", EMPTY, T0 + timedelta(minutes=46),
     _on_time(health_policy=HealthPolicy(no_traffic="warn")), VerdictKind.HOLD, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("agg", "now", "the_plan", "kind", "pause"),
    [c[1:] for c in ON_TIME],
    ids=[c[0] for c in ON_TIME],
)
def test_a_stage_with_no_guardrails_and_no_floor_completes_on_time_only_with_events(
    agg: FlagAggregates, now: datetime, the_plan: Plan, kind: VerdictKind, pause: PauseReason | None
) -> None:
    verdict = evaluate(rollout(the_plan), agg, now)
    assert (verdict.kind, verdict.pause_reason) == (kind, pause), verdict.reason
