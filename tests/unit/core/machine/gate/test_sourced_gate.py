"""The gate on guardrails read from Prometheus: the same tests, and never an advance
on a reading that is missing, stale, for another stage or unusable."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from controller.core.machine.gate import evaluate
from controller.core.machine.queries import combined, planned_queries, split
from controller.core.machine.sourced import sourced_tests
from controller.core.metrics_source.readings import (
    Answer,
    Failing,
    FlagReadings,
    Series,
    Taken,
)
from controller.core.rollouts.plan import Plan, parse_plan
from controller.core.rollouts.rollout import Phase, Rollout, Verdict, VerdictKind
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.wire import GuardrailTest
from tests.support.documents import as_read

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=31)
AGE = timedelta(seconds=30)
COUNT = 'sum(increase(req_total{f="{{flag}}",v="{{arm}}",code="500"}[{{window}}]))'
TOTAL = 'sum(increase(req_total{f="{{flag}}",v="{{arm}}"}[{{window}}]))'
BUCKETS = 'sum by (le) (increase(lat_bucket{f="{{flag}}",v="{{arm}}"}[{{window}}]))'
SOURCE = "prometheus at http://prom:9090 (setting prometheus.url)"


def plan(*, events_guardrail: bool = True, **extra: object) -> Plan:
    guardrails: list[dict[str, object]] = [
        {
            "metric": "error_rate",
            "source": "prometheus",
            "prometheus": {"count": COUNT, "total": TOTAL, "arms": {"treatment": "on"}},
        },
        {"metric": "latency_p95", "source": "prometheus", "prometheus": {"buckets": BUCKETS}},
    ]
    if events_guardrail:
        guardrails.append({"metric": "conversion_rate"})
    return parse_plan(
        {
            "stages": [
                {"percent": 10, "min_duration": "30m", "min_units_per_arm": 0},
                {"percent": 100, "min_duration": 0, "min_units_per_arm": 0},
            ],
            "guardrails": guardrails,
            **extra,
        }
    )


def rollout(p: Plan, stage: int = 0) -> Rollout:
    return Rollout(
        flag="checkout",
        rollout_id="r1",
        plan=p,
        phase=Phase.RUNNING,
        stage=stage,
        stage_started_at=T0,
        salt="s",
        flag_version=1,
        stage_versions={stage: [1]},
        started_at=T0,
        updated_at=T0,
    )


def number(value: float) -> Answer:
    return Answer((Series((), value),))


def histogram(p95_ms: float, n: float) -> Answer:
    """Buckets whose p95 is near ``p95_ms``: 90% at half of it, the rest to twice it."""
    edges = [p95_ms / 2, p95_ms, p95_ms * 2, math.inf]
    cumulative = [0.9 * n, 0.95 * n, n, n]
    return Answer(
        tuple(
            Series((("le", "+Inf" if math.isinf(e) else str(e / 1000)),), c)
            for e, c in zip(edges, cumulative, strict=True)
        )
    )


def reading(
    r: Rollout,
    *,
    errors: tuple[float, float] = (200, 200),
    p95: tuple[float, float] = (100, 100),
    at: datetime = NOW,
    stage: int | None = None,
) -> FlagReadings:
    key = (r.rollout_id, r.stage if stage is None else stage, r.stage_started_at)
    counted = {
        ("treatment", "count"): number(errors[0]),
        ("treatment", "total"): number(10_000),
        ("control", "count"): number(errors[1]),
        ("control", "total"): number(10_000),
    }
    latency = {
        ("treatment", "buckets"): histogram(p95[0], 10_000),
        ("control", "buckets"): histogram(p95[1], 10_000),
    }
    queries = {k: f"q{k}" for k in (*counted, *latency)}
    return FlagReadings(
        source=SOURCE,
        taken={
            "error_rate": Taken(key, at, counted, queries),
            "latency_p95": Taken(key, at, latency, queries),
        },
    )


def events(units: int = 0) -> FlagAggregates:
    arm = ArmAggregate(units=units, exposures=units, conversions=units // 10)
    return FlagAggregates("checkout", frozenset({1}), arm, arm)


def verdict(
    r: Rollout, readings: FlagReadings | None, data: FlagAggregates | None = None
) -> Verdict:
    sourced = sourced_tests(r, readings, NOW, max_age=AGE)
    return evaluate(r, data or events(), NOW, sourced)


def test_a_healthy_reading_advances_on_prometheus_alone() -> None:
    r = rollout(plan(events_guardrail=False))
    got = verdict(r, reading(r))
    assert got.kind is VerdictKind.ADVANCE, got.reason
    shown = as_read(got.evidence)["sources"]["reads"]["error_rate"]
    assert shown["arms"]["treatment"] == {"requests": 10_000, "errors": 200}
    assert 'v="{{arm}}"' not in shown["queries"]["count"]["treatment"]
    assert as_read(got.evidence)["guardrails"]["latency_p95"]["regressed"] is False


@pytest.mark.parametrize("metric", ["error_rate", "latency_p95"])
def test_a_prometheus_guardrail_says_it_assumes_independent_requests(metric: str) -> None:
    """A series carries no unit: its test is on requests, and the evidence says so."""
    r = rollout(plan(events_guardrail=False))
    got = verdict(r, reading(r))
    assert got.evidence.guardrails is not None
    test = got.evidence.guardrails[metric]
    assert isinstance(test, GuardrailTest)
    assert test.unit_of_analysis == "request"
    assert (test.n, test.design_effect, test.widening) == (20_000, None, None)
    assert as_read(got.evidence)["guardrails"][metric]["unit_of_analysis"] == "request"


@pytest.mark.parametrize(
    ("errors", "p95", "breach"),
    [((600, 200), (100, 100), "error_rate"), ((200, 200), (200, 100), "latency_p95")],
)
def test_a_twin_that_regresses_is_rolled_back_naming_its_guardrail(
    errors: tuple[float, float], p95: tuple[float, float], breach: str
) -> None:
    r = rollout(plan())
    got = verdict(r, reading(r, errors=errors, p95=p95))
    assert got.kind is VerdictKind.ROLLBACK
    assert as_read(got.evidence)["breach"] == breach


@pytest.mark.parametrize(
    ("readings", "why"),
    [
        (None, "no reading for this stage yet"),
        ("stale", "the last reading is 31 s old; failing for 40 s: connection refused"),
        ("other stage", "no reading for this stage yet"),
    ],
)
def test_a_missing_or_stale_reading_holds_naming_the_source(readings: object, why: str) -> None:
    r = rollout(plan())
    given: FlagReadings | None = None
    if readings == "stale":
        old = reading(r, at=NOW - timedelta(seconds=31))
        failing = {"error_rate": Failing("connection refused", NOW - timedelta(seconds=40))}
        given = FlagReadings(SOURCE, old.taken, failing)
    elif readings == "other stage":
        given = reading(r, stage=1)
    got = verdict(r, given)
    assert got.kind is VerdictKind.HOLD
    source = "prometheus" if given is None else SOURCE
    assert f"error_rate from {source}: {why}" in got.reason


def test_event_guardrails_still_roll_back_while_the_source_is_away() -> None:
    r = rollout(plan())
    treatment = ArmAggregate(units=5000, exposures=5000, conversions=100)
    control = ArmAggregate(units=5000, exposures=5000, conversions=500)
    got = verdict(r, None, FlagAggregates("checkout", frozenset({1}), treatment, control))
    assert got.kind is VerdictKind.ROLLBACK
    assert as_read(got.evidence)["breach"] == "conversion_rate"


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (Answer(()), "no series"),
        (number(math.nan), "NaN"),
        (number(math.inf), "infinite"),
        (Answer((Series((), 1), Series((("a", "b"),), 2))), "2 series where one number"),
        ("the answer is over the 1048576-byte limit", "1048576-byte"),
    ],
)
def test_an_unusable_answer_holds_with_its_reason(answer: Answer | str, why: str) -> None:
    r = rollout(plan(events_guardrail=False))
    good = reading(r)
    taken = good.taken["error_rate"]
    answers = {**taken.answers, ("control", "total"): answer}
    bad = Taken(taken.stage, taken.at, answers, taken.queries)
    got = verdict(r, FlagReadings(SOURCE, {**good.taken, "error_rate": bad}))
    assert got.kind is VerdictKind.HOLD
    assert "error_rate from Prometheus unusable: control: total" in got.reason
    assert why in got.reason


def test_a_dry_run_guardrail_without_its_reading_does_not_hold() -> None:
    p = plan(events_guardrail=False)
    dry = [g.model_copy(update={"dry_run": True}) for g in p.guardrails]
    r = rollout(p.model_copy(update={"guardrails": dry}))
    got = verdict(r, None, events(units=10))
    assert got.kind is VerdictKind.ADVANCE, got.reason


def test_queries_are_planned_per_arm_with_the_arms_label_values() -> None:
    r = rollout(plan())
    planned = planned_queries(r, NOW)
    assert sorted(planned) == ["error_rate", "latency_p95"]
    asked = {(q.arm, q.role): q.promql for q in planned["error_rate"]}
    assert asked[("treatment", "count")] == (
        'sum(increase(req_total{f="checkout",v="on",code="500"}[1860s]))'
    )
    assert 'v="control"' in asked[("control", "total")]
    # No concurrent control: no comparison, only the treated requests (the stage's traffic)
    at_100 = planned_queries(rollout(plan(), stage=1), NOW)
    assert [(q.name, q.arm, q.role) for q in at_100["traffic"]] == [
        ("traffic", "treatment", "total"),
        ("traffic", "treatment", "fresh"),
    ]
    assert list(at_100) == ["traffic"]


def test_a_prometheus_limit_gates_the_stage_without_control() -> None:
    limit = {"name": "error_share", "query": 'sum(x{f="{{flag}}"})', "max": 0.01}
    r = rollout(plan(limits={"prometheus": [limit]}), stage=1)
    assert [q.promql for q in planned_queries(r, NOW)["limit:error_share"]] == [
        'sum(x{f="checkout"})',
        'max(label_replace(timestamp(x{f="checkout"}), "rc_selector", "0", "", ""))',
    ]
    assert verdict(r, None).kind is VerdictKind.HOLD  # not read: never complete
    key = (r.rollout_id, 1, T0)
    traffic = Taken(key, NOW, {("treatment", "total"): number(5000)}, {})
    for value, kind in [(0.02, VerdictKind.ROLLBACK), (0.002, VerdictKind.ADVANCE)]:
        taken = Taken(key, NOW, {("treatment", "value"): number(value)}, {})
        got = verdict(r, FlagReadings(SOURCE, {"limit:error_share": taken, "traffic": traffic}))
        assert got.kind is kind, got.reason
        if kind is VerdictKind.ROLLBACK:
            assert "error_share 0.02 is above its limit 0.01 with no concurrent control" in (
                got.reason
            )


def test_a_guardrails_queries_are_asked_as_one_and_split_back() -> None:
    r = rollout(plan())
    queries = planned_queries(r, NOW)["latency_p95"]
    joined = combined(queries)
    assert joined is not None
    assert joined.count(" or ") == 3  # each arm's buckets and the newest sample of its series
    assert '"rc_arm", "control", "", ""), "rc_role", "buckets"' in joined
    assert '"rc_arm", "control", "", ""), "rc_role", "fresh"' in joined
    assert joined.startswith("label_replace(label_replace((\n")  # a comment ends at its line
    tagged = Answer(
        (
            Series((("le", "0.1"), ("rc_arm", "treatment"), ("rc_role", "buckets")), 5.0),
            Series((("le", "+Inf"), ("rc_arm", "treatment"), ("rc_role", "buckets")), 9.0),
            Series((("rc_arm", "other"), ("rc_role", "buckets")), 1.0),
        )
    )
    parts = split(tagged, queries)
    assert parts[("treatment", "buckets")] == Answer(
        (Series((("le", "0.1"),), 5.0), Series((("le", "+Inf"),), 9.0))
    )
    assert parts[("control", "buckets")] == Answer(())
    limit = {"name": "share", "query": 'sum(x{f="{{flag}}"})', "max": 1}
    at_100 = rollout(plan(limits={"prometheus": [limit]}), stage=1)
    assert combined(planned_queries(at_100, NOW)["limit:share"]) is None  # a scalar stays apart


def seen(readings: FlagReadings, newest: dict[str, Answer]) -> FlagReadings:
    """``readings`` with each arm's newest sample answered as ``newest`` says."""
    taken = {
        name: Taken(
            t.stage,
            t.at,
            {**t.answers, **{(arm, "fresh"): got for arm, got in newest.items()}},
            t.queries,
        )
        for name, t in readings.taken.items()
    }
    return FlagReadings(readings.source, taken, readings.failing)


SCRAPED = number(NOW.timestamp() - 2)


@pytest.mark.parametrize(
    ("treatment", "kind", "why"),
    [
        (SCRAPED, VerdictKind.ADVANCE, None),
        (Answer(()), VerdictKind.HOLD, "treatment: no current sample of its series"),
        (number(NOW.timestamp() - 61), VerdictKind.HOLD, "treatment: its newest sample is 61 s"),
        (number(0.0), VerdictKind.HOLD, "dated 1970-01-01T00:00:00+00:00"),
        (number(NOW.timestamp() + 3600), VerdictKind.HOLD, "after it was asked: implausible"),
    ],
)
def test_an_arm_no_longer_scraped_holds_though_its_counts_would_advance(
    treatment: Answer, kind: VerdictKind, why: str | None
) -> None:
    # Given counts that would advance: increase() over the stage keeps answering for an
    # arm whose target went dark, from the samples it took before
    r = rollout(plan(events_guardrail=False))
    readings = seen(reading(r), {"treatment": treatment, "control": SCRAPED})
    sourced = sourced_tests(r, readings, NOW, max_age=AGE, sample_age=timedelta(seconds=60))
    got = evaluate(r, events(), NOW, sourced)
    assert got.kind is kind, got.reason
    if why is not None:
        assert "error_rate from Prometheus unusable: " in got.reason
        assert why in got.reason
        assert why in sourced.unusable["error_rate"]


def test_an_answer_dated_far_from_its_asking_holds() -> None:
    r = rollout(plan(events_guardrail=False))
    good = reading(r)
    taken = good.taken["error_rate"]
    dated = Answer((Series((), 10_000, 0.0),))  # a total dated 1970
    answers = {**taken.answers, ("control", "total"): dated}
    bad = FlagReadings(SOURCE, {**good.taken, "error_rate": Taken(taken.stage, NOW, answers, {})})
    got = verdict(r, bad)
    assert got.kind is VerdictKind.HOLD
    assert "control: an answer dated 1970-01-01T00:00:00+00:00" in got.reason


def test_a_dry_run_guardrails_unusable_reading_is_named_though_it_does_not_hold() -> None:
    p = plan(events_guardrail=False)
    dry = [g.model_copy(update={"dry_run": True}) for g in p.guardrails]
    r = rollout(p.model_copy(update={"guardrails": dry}))
    readings = seen(reading(r), {"treatment": Answer(()), "control": SCRAPED})
    sourced = sourced_tests(r, readings, NOW, max_age=AGE)
    assert evaluate(r, events(units=10), NOW, sourced).kind is VerdictKind.ADVANCE
    assert sorted(sourced.unusable) == ["error_rate", "latency_p95"]


@pytest.mark.parametrize(
    ("key", "default", "flag", "environment"),
    [
        ("checkout@staging", "production", "checkout", "staging"),
        ("checkout", "production", "checkout", "production"),
        ("checkout", "default", "checkout", "default"),
    ],
)
def test_the_flag_and_its_environment_fill_their_own_placeholders(
    key: str, default: str, flag: str, environment: str
) -> None:
    total = 'sum(increase(r{f="{{flag}}",env="{{environment}}",v="{{arm}}"}[{{window}}]))'
    guardrail = {
        "metric": "error_rate",
        "source": "prometheus",
        "prometheus": {"count": total.replace("r{", 'r{code="500",'), "total": total},
    }
    p = plan(events_guardrail=False).model_copy(update={"guardrails": []})
    r = rollout(parse_plan({**p.model_dump(mode="json"), "guardrails": [guardrail]}))
    planned = planned_queries(r.model_copy(update={"flag": key}), NOW, default_environment=default)
    asked = {(q.arm, q.role): q.promql for q in planned["error_rate"]}
    assert asked["treatment", "total"] == (
        f'sum(increase(r{{f="{flag}",env="{environment}",v="treatment"}}[1860s]))'
    )
    assert (
        f'timestamp(r{{f="{flag}",env="{environment}",v="control"}})' in asked["control", "fresh"]
    )
