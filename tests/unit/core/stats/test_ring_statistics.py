"""Statistics inside the audience: the fold, the gate per ring, the absolute limits.

Events are made by the one evaluation function for simulated units with mixed
attributes, folded as ingest folds them, and gated: only the compared cohort
reaches the arms the gate reads.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.core.common.histogram import BUCKET_COUNT
from controller.core.machine import gate
from controller.core.reading import comparison_text
from controller.core.reading.views import RolloutStatus, describe
from controller.core.rollouts.plan import Plan, parse_plan
from controller.core.rollouts.plan_parts import Limits
from controller.core.rollouts.rollout import Phase, Rollout, VerdictKind
from controller.core.rules.matching import IdSegments
from controller.core.stats.aggregates import ArmAggregate, CellDelta, CellKey, FlagAggregates
from controller.core.stats.folding import fold
from controller.core.stats.limits import NO_CONTROL, limit_tests
from controller.core.wire import GateEvidence
from controller.core.wire.decoding import ExposureIn, InEvent, RequestIn
from controller.core.wire.evaluation import evaluate
from controller.core.wire.messages import FlagState
from controller.ctl.looking.views import status_detail
from controller.daemon.outputs.rendering import flag_state_fields
from tests.support.documents import as_read, sequential_test

NOW = datetime(2026, 11, 23, tzinfo=UTC)
SEGMENTS = IdSegments({"staff": {f"staff-{i}" for i in range(300)}})
Outcome = Callable[[dict[str, object], str, random.Random], bool]
"""Whether a request fails, from the unit's context and arm."""


def ring_plan(country: str, **extra: Any) -> Plan:
    return parse_plan(
        {
            "stages": [
                {"audience": 'user_id in segment("staff")', "percent": 100},
                {"audience": f'country == "{country}"', "percent": 25, "min_units_per_arm": 50},
                {"percent": 100},
            ],
            "guardrails": [{"metric": "error_rate"}],
            "limits": {"error_rate": 0.05},
            **extra,
        }
    )


def at(plan: Plan, stage: int, salt: str = "pepper") -> Rollout:
    return Rollout(
        flag="checkout",
        rollout_id="r-1",
        plan=plan,
        phase=Phase.RUNNING,
        stage=stage,
        stage_started_at=NOW - timedelta(days=1),
        salt=salt,
        flag_version=5,
        started_at=NOW - timedelta(days=2),
        updated_at=NOW,
    )


def population(count: int, rng: random.Random) -> list[dict[str, object]]:
    """Staff, Thai, American and German units, some with no country at all."""
    out: list[dict[str, object]] = []
    for i in range(count):
        unit = f"staff-{i}" if i < 300 else f"u-{rng.randrange(10**9)}"
        context: dict[str, object] = {"user_id": unit}
        country = rng.choice(["TH", "TH", "US", "US", "DE", None])
        if country is not None:
            context["country"] = country
        out.append(context)
    return out


def events(
    rollout: Rollout, people: list[dict[str, object]], fails: Outcome, rng: random.Random
) -> list[InEvent]:
    """An exposure and a request per unit, as an app on the SDK reports them."""
    fields = flag_state_fields(rollout)
    state = FlagState.model_validate({"type": "flag_state", "v": 1, "id": "m", "ts": 0, **fields})
    out: list[InEvent] = []
    for i, context in enumerate(people):
        unit = str(context["user_id"])
        found = evaluate("checkout", state, unit, context, SEGMENTS)
        common: dict[str, Any] = {
            "v": 1,
            "ts": 0,
            "flag": "checkout",
            "unit": unit,
            "arm": found.arm.value,
            "flag_version": found.version,
            "cohort": None if found.cohort is None else found.cohort.value,
        }
        out.append(ExposureIn(id=f"e{i}", **common))
        error = fails(context, found.arm.value, rng)
        out.append(RequestIn(id=f"r{i}", error=error, latency_ms=50.0, **common))
    return out


def arm(cells: dict[CellKey, CellDelta], name: str) -> ArmAggregate:
    hist = [0] * BUCKET_COUNT
    total = CellDelta()
    units: set[str] = set()
    for (_, _, arm_name), cell in cells.items():
        if arm_name != name:
            continue
        for field in ("exp", "req", "err", "lat_n", "lat_sum"):
            setattr(total, field, getattr(total, field) + getattr(cell, field))
        units |= cell.units
        for index, n in cell.hist.items():
            hist[index] += n
    return ArmAggregate(
        exposures=total.exp,
        units=len(units),
        requests=total.req,
        errors=total.err,
        latency_count=total.lat_n,
        latency_sum_ms=total.lat_sum,
        latency_histogram=tuple(hist),
    )


def aggregates(cells: dict[CellKey, CellDelta]) -> FlagAggregates:
    return FlagAggregates(
        "checkout", frozenset({5}), arm(cells, "treatment"), arm(cells, "control")
    )


def regressing_in(country: str, *, base: float = 0.02, bad: float = 0.10) -> Outcome:
    """The change fails ``bad`` of the requests of ``country``'s treated units; others ``base``."""

    def fails(context: dict[str, object], arm_name: str, rng: random.Random) -> bool:
        worse = arm_name == "treatment" and context.get("country") == country
        return rng.random() < (bad if worse else base)

    return fails


# -- the fold -----------------------------------------------------------------------------


def test_carried_and_outside_units_are_counted_apart_from_both_arms() -> None:
    rng = random.Random(1)
    cells: dict[CellKey, CellDelta] = {}
    rollout = at(ring_plan("TH"), 1)
    fold(events(rollout, population(3000, rng), regressing_in("XX"), rng), cells)
    by_arm = {name: arm(cells, name) for name in ("treatment", "control", "carried", "outside")}
    assert by_arm["carried"].units == 300  # every staff unit, whatever its country
    assert by_arm["outside"].units > 0
    assert sum(a.units for a in by_arm.values()) == 3000
    share = by_arm["treatment"].units / (by_arm["treatment"].units + by_arm["control"].units)
    assert abs(share - 0.25) < 0.05  # the Thai units only, split by the stage's percent


# -- a regression inside one audience --------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "kind"), [("TH", VerdictKind.ROLLBACK), ("US", VerdictKind.ADVANCE)]
)
def test_a_regression_in_one_audience_rolls_back_while_another_is_healthy(
    country: str, kind: VerdictKind
) -> None:
    """The change hurts Thai users only: its Thai ring rolls back, its American ring advances."""
    rng = random.Random(2)
    cells: dict[CellKey, CellDelta] = {}
    rollout = at(ring_plan(country), 1)
    fold(events(rollout, population(12_000, rng), regressing_in("TH"), rng), cells)
    verdict = gate.evaluate(rollout, aggregates(cells), NOW)
    assert verdict.kind is kind, verdict.reason
    assert not as_read(verdict.evidence)["srm"]["flagged"]


def test_a_regression_carried_from_an_earlier_ring_does_not_reach_the_comparison() -> None:
    """Staff are all treated and all failing: counted as carried, they move neither arm."""
    rng = random.Random(3)

    def staff_fail(context: dict[str, object], arm_name: str, rng: random.Random) -> bool:
        return str(context["user_id"]).startswith("staff-") or rng.random() < 0.02

    cells: dict[CellKey, CellDelta] = {}
    rollout = at(ring_plan("TH"), 1)
    fold(events(rollout, population(12_000, rng), staff_fail, rng), cells)
    assert gate.evaluate(rollout, aggregates(cells), NOW).kind is VerdictKind.ADVANCE


# -- A/A inside an audience, across peeks --------------------------------------------------------


def test_an_a_a_inside_an_audience_stays_under_alpha_across_peeks() -> None:
    """No difference inside the Thai ring, a big one outside it: rollbacks stay under alpha.

    Each simulated rollout gets its own salt, so its own split; the gate looks
    after every batch of units, as the daemon does on each tick.
    """
    rng = random.Random(20_261_126)
    plan = ring_plan("TH")
    runs, peeks, batch = 60, 8, 500

    def outside_worse(context: dict[str, object], arm_name: str, rng: random.Random) -> bool:
        inside = context.get("country") == "TH" and not str(context["user_id"]).startswith("staff")
        return rng.random() < (0.05 if inside else (0.5 if arm_name == "treatment" else 0.01))

    rolled_back = 0
    for run in range(runs):
        rollout = at(plan, 1, salt=f"salt-{run}")
        cells: dict[CellKey, CellDelta] = {}
        for _ in range(peeks):
            fold(events(rollout, population(batch, rng), outside_worse, rng), cells)
            if gate.evaluate(rollout, aggregates(cells), NOW).kind is VerdictKind.ROLLBACK:
                rolled_back += 1
                break
    assert rolled_back / runs <= plan.alpha


# -- 100% of an audience: absolute limits --------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "kind"), [(0.02, VerdictKind.ADVANCE), (0.12, VerdictKind.ROLLBACK)]
)
def test_a_stage_at_100_percent_of_its_audience_gates_on_the_plans_limits(
    rate: float, kind: VerdictKind
) -> None:
    rng = random.Random(4)
    rollout = at(ring_plan("TH"), 0)  # staff at 100%: no concurrent control

    def fails(context: dict[str, object], arm_name: str, rng: random.Random) -> bool:
        return rng.random() < rate

    cells: dict[CellKey, CellDelta] = {}
    people: list[dict[str, object]] = [
        {"user_id": f"staff-{i}"} for _ in range(4) for i in range(300)
    ]
    fold(events(rollout, people, fails, rng), cells)
    data = aggregates(cells)
    assert data.control.units == 0
    verdict = gate.evaluate(rollout, data, NOW)
    assert verdict.kind is kind, verdict.reason
    assert as_read(verdict.evidence)["comparison"] == NO_CONTROL
    assert as_read(verdict.evidence)["limits"]["error_rate"]["limit"] == 0.05
    if kind is VerdictKind.ROLLBACK:
        assert "no concurrent control" in verdict.reason


@pytest.mark.parametrize(
    ("count", "n", "limit", "breached"),
    [
        (0, 0, 0.01, False),  # no data
        (10, 1000, 0.01, False),  # at the limit
        (30, 1000, 0.01, True),  # three times it
        (12, 1000, 0.01, False),  # a little over: not shown
        (1000, 1000, 0.5, True),
    ],
)
def test_a_rate_is_shown_above_its_limit_only_beyond_the_sequential_bound(
    count: int, n: int, limit: float, breached: bool
) -> None:
    treated = ArmAggregate(requests=n, errors=count)
    tests = limit_tests(Limits(error_rate=limit), treated, alpha=0.05, n_tune=5000)
    assert tests["error_rate"].regressed is breached


def test_a_latency_limit_is_a_share_of_slow_requests() -> None:
    hist = [0] * BUCKET_COUNT
    fast, slow = 40, BUCKET_COUNT - 2
    hist[fast], hist[slow] = 900, 100  # 10% far above any limit: p95 is slow
    tests = limit_tests(
        Limits(latency_p95_ms=200),
        ArmAggregate(latency_histogram=tuple(hist)),
        alpha=0.05,
        n_tune=5000,
    )
    assert tests["latency_p95_ms"].regressed
    assert tests["latency_p95_ms"].tolerance == 0.05


def test_the_status_says_no_concurrent_control_never_a_comparison() -> None:
    rng = random.Random(5)
    rollout = at(ring_plan("TH"), 0)

    def fails(context: dict[str, object], arm_name: str, rng: random.Random) -> bool:
        return rng.random() < 0.01

    cells: dict[CellKey, CellDelta] = {}
    fold(events(rollout, [{"user_id": f"staff-{i}"} for i in range(300)], fails, rng), cells)
    verdict = gate.evaluate(rollout, aggregates(cells), NOW)
    text = comparison_text(verdict.evidence)
    assert text.startswith(f"{NO_CONTROL}: gated on absolute limits: error_rate: ")
    assert "300 requests: only an error rate above" in text
    view = describe(rollout, verdict, NOW)
    detail = status_detail(RolloutStatus.model_validate({**view.model_dump(), "stale": False}))
    assert f"comparison: {text}" in detail
    assert (
        comparison_text(gate.evaluate(at(ring_plan("TH"), 1), aggregates(cells), NOW).evidence)
        == ""
    )


def test_a_ring_without_traffic_of_its_own_raises_no_traffic_past_the_grace() -> None:
    """Staff keep sending (carried), nobody Thai does: the Thai ring is not silently waiting."""
    rng = random.Random(6)
    rollout = at(ring_plan("TH"), 1)
    staff: list[dict[str, object]] = [
        {"user_id": f"staff-{i}", "country": "TH"} for i in range(300)
    ]
    cells: dict[CellKey, CellDelta] = {}
    fold(events(rollout, staff, regressing_in("XX"), rng), cells)
    assert arm(cells, "carried").units == 300
    verdict = gate.evaluate(rollout, aggregates(cells), NOW)
    assert verdict.kind is VerdictKind.PAUSE
    assert verdict.reason.startswith('no events in the stage from country == "TH"')
    assert as_read(verdict.evidence)["audience"]["stage"] == 'country == "TH"'
    assert verdict.applied is not None
    assert verdict.applied.trigger == "no_traffic"


def limit(
    limit: float, ceiling: float, rate: float, lower: float, upper: float, **more: Any
) -> Any:
    """A limit's entry as a gate publishes it: the rate of 864 requests against its ceiling."""
    test = sequential_test(delta=rate, lower=lower, upper=upper, tolerance=ceiling, n=864, **more)
    return {"limit": limit, "test": test, "detectable": more.pop("detectable", 0.095)}


@pytest.mark.parametrize(
    ("limits", "said"),
    [
        (
            {"error_rate": limit(0.01, 0.01, 0.03, 0.012, 0.048, regressed=True)},
            "error_rate: 3.0% [1.2%, 4.8%] against its limit 1.0%, breached",
        ),
        (  # not yet either way: what its size could catch
            {"error_rate": limit(0.05, 0.05, 0.0141, -0.02, 0.072)},
            "error_rate: 1.4% [0, 7.2%] against its limit 5.0%, not shown above, nor yet"
            " under (864 requests: only an error rate above 9.5% would be caught)",
        ),
        (  # the bound a hair under the limit reads under it, never equal to it
            {"error_rate": limit(0.05, 0.05, 0.031, 0.012, 0.04996)},
            "error_rate: 3.100% [1.200%, 4.996%] against its limit 5.000%, shown under it",
        ),
        (
            {"error_rate": limit(0.05, 0.05, 0.061, 0.01, 0.11)},
            "error_rate: 6% [1%, 11%] against its limit 5.0%, above it, not yet shown"
            " above (864 requests: only an error rate above 9.5% would be caught)",
        ),
        (
            {"latency_p95_ms": limit(200, 0.05, 0.031, 0.01, 0.045)},
            "latency_p95_ms: 3.1% [1.0%, 4.5%] of requests slower than 200 ms, at most 5.0%,"
            " shown under it",
        ),
        (
            {"latency_p99_ms": limit(350.5, 0.01, 0.02, 0.012, 0.028, regressed=True)},
            "latency_p99_ms: 2.0% [1.2%, 2.8%] of requests slower than 350.5 ms, at most"
            " 1.0%, breached",
        ),
        (  # a damaged record: the reader leaves it out, no number is invented
            {"latency_p95_ms": {"limit": "x", "test": {"delta": True}}},
            "none declared",
        ),
        ({"error_rate": {"limit": 0.01, "test": None}}, "none declared"),
    ],
)
def test_limits_are_said_with_their_units(limits: dict[str, object], said: str) -> None:
    text = comparison_text(GateEvidence.tolerant({"comparison": NO_CONTROL, "limits": limits}))
    assert text == f"{NO_CONTROL}: gated on absolute limits: {said}"
