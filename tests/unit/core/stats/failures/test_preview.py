"""The smallest new failure a stage catches: tables of cases, and the gate's own test."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest

from controller.core.rollouts import DEFAULT_PLAN, Guardrail, Plan, Stage
from controller.core.stats import ArmAggregate, FailureCounts, FlagAggregates
from controller.core.stats.failures import preview
from controller.core.stats.failures.preview import (
    LastLook,
    below,
    count_chances,
    last_look_width,
    rate_text,
    smallest_new_failure,
    smallest_rate,
)
from controller.core.stats.failures.testing import TESTS, failure_tests
from controller.core.stats.guardrails import fixed_horizon_test
from controller.core.stats.power import POWER, Z_POWER, detectable, stage_preview
from controller.core.stats.regressing import Traffic
from controller.core.stats.units import EXCEPTIONS, EXPOSURES, KIND_COUNT, UNIT_BUCKETS, UnitBuckets

NEW = Guardrail(metric="new_failures")
PLAN = DEFAULT_PLAN.model_copy(
    update={
        "guardrails": [
            Guardrail(metric="error_rate"),
            Guardrail(metric="latency_p99", tolerance=0.10, relative=True),
            NEW,
        ],
        "alpha_weights": None,
    }
)
"""The default plan's stages with the error rate, p99 and new_failures: a third of its alpha
each (the default plan itself weighs the error rate twice), half of that at each final
look."""
ALONE = Traffic(requests_per_s=200.0, requests_per_unit=1.0)
"""One request per unit, units alike: the failure's count is Poisson."""
HEAVY = Traffic(requests_per_s=20.0, requests_per_unit=10.0, heavy_share=0.01, heavy_requests=400.0)
"""1% of units send 400 requests each."""


def _plan(**changed: object) -> Plan:
    return PLAN.model_copy(update=changed)


def _figure(
    percent: float = 5.0,
    seconds: float = 1800.0,
    traffic: Traffic = ALONE,
    plan: Plan = PLAN,
    guardrail: Guardrail = NEW,
) -> float:
    found, why = smallest_new_failure(guardrail, percent, seconds, traffic, plan, power=POWER)
    assert found is not None, why
    return found


# --- the gate's own test: where it regresses on a count against none --------------------


def _arm(exposures: int, failures: int) -> ArmAggregate:
    """An arm of ``exposures`` (as many units) spread evenly over the buckets, the new
    failure's ``failures`` one to a bucket: its buckets then show no clustering (the gate's
    design effect is at most 1, taken as 1)."""
    totals = [0.0] * (UNIT_BUCKETS * KIND_COUNT)
    column = [1 if b < failures else 0 for b in range(UNIT_BUCKETS)]
    for b in range(UNIT_BUCKETS):
        totals[b * KIND_COUNT + EXPOSURES] = exposures / UNIT_BUCKETS
        totals[b * KIND_COUNT + EXCEPTIONS] = column[b]
    failed = {"new": FailureCounts("NewError in app.py:f", "", tuple(column))} if failures else {}
    return ArmAggregate(
        exposures=exposures, units=exposures, buckets=UnitBuckets(tuple(totals)), failed=failed
    )


def _gate_regresses(
    count: int, exposures: tuple[int, int], plan: Plan, *, final_look: bool = False
) -> bool:
    """Whether the gate's test of the new fingerprint regresses at the stage's last look on
    ``count`` failures against none: its always-valid boundary (at its share of the level
    where the stage has a final look), or (``final_look``) also its own fixed-horizon test at
    the look's share of the level over the tests, as the final look takes the test it reads."""
    data = FlagAggregates("f", frozenset({1}), _arm(exposures[0], count), _arm(exposures[1], 0))
    looked = plan.final_look_share > 0 and not NEW.dry_run
    alpha = plan.sequential_alpha(NEW.key) if looked else plan.alpha_for(NEW.key)
    tested = [t for t in failure_tests(NEW, data, plan, alpha) if t.key == "new"]
    if not tested or tested[0].result is None:
        return False
    result = tested[0].result
    if result.regressed:
        return True
    level = plan.final_alpha(NEW.key) / TESTS
    return final_look and looked and fixed_horizon_test(result, level).regressed


def _look(exposures: tuple[int, int], plan: Plan, *, final_look: bool = False) -> LastLook:
    width = last_look_width(NEW, plan, sum(exposures), final_look=final_look)
    return LastLook(exposures=(float(exposures[0]), float(exposures[1])), width=width,
                    tolerance=0.0, deff=1.0, degrees=math.inf)  # fmt: skip


CASES = [
    # the default plan's 1% and 50% stages at 200 requests a second, with their final looks
    ((3_600, 356_400), PLAN),
    ((1_440_000, 1_440_000), PLAN),
    # no final look: the always-valid boundary alone, at the whole level over the tests
    ((3_600, 356_400), _plan(final_look_share=0.0)),
    ((36_000, 684_000), _plan(final_look_share=0.0, alpha=0.01)),
    # few exposures: the control's floor of half an event and the pooled null count
    ((400, 400), PLAN),
]


@pytest.mark.parametrize("final_look", [False, True], ids=["boundary", "and_own_look"])
@pytest.mark.parametrize(("exposures", "plan"), CASES)
def test_the_look_regresses_on_exactly_the_counts_the_gate_does(
    exposures: tuple[int, int], plan: Plan, final_look: bool
) -> None:
    look = _look(exposures, plan, final_look=final_look)
    preview_says = [look.chance_at(k) == 1.0 for k in range(UNIT_BUCKETS + 1)]
    gate_says = [
        _gate_regresses(k, exposures, plan, final_look=final_look) for k in range(UNIT_BUCKETS + 1)
    ]
    assert preview_says == gate_says
    assert 8 < gate_says.index(True) < 40  # a threshold, inside the counts tried


@pytest.mark.parametrize("final_look", [False, True], ids=["boundary", "and_own_look"])
@pytest.mark.parametrize(("exposures", "plan"), CASES[:4])
def test_at_the_figure_the_gates_threshold_is_reached_four_times_in_five(
    exposures: tuple[int, int], plan: Plan, final_look: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With units alike and the gate's design effect read exactly (no spread), the figure is
    where a Poisson count reaches the gate's own threshold with chance 0.8."""
    monkeypatch.setattr(preview, "estimate_degrees", lambda *_: math.inf)
    threshold = next(
        k for k in range(200) if _gate_regresses(k, exposures, plan, final_look=final_look)
    )
    seconds = sum(exposures) / ALONE.requests_per_s
    percent = 100.0 * exposures[0] / sum(exposures)
    found, _ = smallest_new_failure(
        NEW, percent, seconds, ALONE, plan, power=POWER, final_look=final_look
    )
    assert found is not None
    mean = found * exposures[0]
    below_threshold = math.fsum(
        math.exp(k * math.log(mean) - mean - math.lgamma(k + 1)) for k in range(threshold)
    )
    assert 1.0 - below_threshold == pytest.approx(POWER, abs=1e-6)


@pytest.mark.parametrize(
    ("final_look", "threshold", "exact", "normal"),
    [
        # the always-valid boundary: 24 failures, reached 4 times in 5 from 28.0, where the
        # normal reading asks 32.8 and the gate's threshold is then reached 95% of the time
        (False, 24, 28.0, 32.8),
        # the final look's z of 3.67: 14 failures, from 17.0; the normal reading asks 20.3: 94%
        (True, 14, 17.0, 20.3),
    ],
)
def test_the_normal_approximation_overstates_a_count_against_none(
    final_look: bool, threshold: int, exact: float, normal: float
) -> None:
    """power.py's normal reading, √λ = c + z_0.8 at V̂ = V, against the count's own chance of
    reaching the gate's threshold, in the default plan's 1% stage at 200 requests a second."""
    exposures = (3_600, 356_400)
    look = _look(exposures, PLAN, final_look=final_look)
    assert [look.chance_at(k) for k in (threshold - 1, threshold)] == [0.0, 1.0]
    assert look.chance(exact / exposures[0]) == pytest.approx(POWER, abs=0.002)
    assert (look.width + Z_POWER) ** 2 == pytest.approx(normal, abs=0.05)
    assert look.chance(normal / exposures[0]) > 0.93


# --- what moves the figure -------------------------------------------------------------


@pytest.mark.parametrize(
    ("changed", "bigger"),
    [
        ({"seconds": 600.0}, True),
        ({"seconds": 7200.0}, False),
        ({"percent": 1.0}, True),
        ({"percent": 50.0}, False),
        ({"traffic": replace(ALONE, requests_per_s=20.0)}, True),
        # failures clustered by unit: over-dispersed counts, and the gate's V̂ wider with them
        ({"traffic": replace(ALONE, requests_per_unit=10.0, design_effect=3.0)}, True),
        ({"traffic": replace(ALONE, design_effects={"new_failures": 2.0})}, True),
        # no final look: the always-valid boundary has all of the level
        ({"plan": _plan(final_look_share=0.0)}, False),
        ({"plan": _plan(alpha=0.001)}, True),
        ({"guardrail": Guardrail(metric="new_failures", tolerance=0.001)}, True),
        # a relative tolerance of a rate of none is none
        ({"guardrail": Guardrail(metric="new_failures", tolerance=1.0, relative=True)}, None),
        # alone in a plan, the guardrail has all of its alpha
        ({"plan": _plan(guardrails=[NEW])}, False),
    ],
)
def test_the_figure_grows_or_shrinks_with_what_the_stage_sees(
    changed: dict[str, object], bigger: bool | None
) -> None:
    base = _figure()
    other = _figure(**changed)  # type: ignore[arg-type]
    if bigger is None:
        assert other == pytest.approx(base)
    else:
        assert (other > base) is bigger, (base, other)


def test_the_gates_spread_of_its_design_effect_raises_the_figure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gate reads d̂ from 64 buckets and takes it at least 1: about 9% more failures."""
    scattered = _figure()
    monkeypatch.setattr(preview, "estimate_degrees", lambda *_: math.inf)
    exact = _figure()
    assert 1.03 * exact < scattered < 1.12 * exact


@pytest.mark.parametrize(
    ("percent", "traffic", "seconds", "reason"),
    [
        (100.0, ALONE, 1800.0, "no control arm"),
        (5.0, Traffic(requests_per_s=0.5), 1800.0, "not tested: 45 events"),
        (5.0, Traffic(requests_per_s=0.5, requests_per_unit=500.0), 1e5, "fewer than 8 units"),
        # 1% of units send 400 requests each: a 1% arm of 36 units holds one in three stages,
        # and it then sends over half of the arm's requests
        (1.0, HEAVY, 1800.0, "tests it in only"),
    ],
)
def test_a_stage_that_cannot_catch_a_new_failure_says_why(
    percent: float, traffic: Traffic, seconds: float, reason: str
) -> None:
    found, why = smallest_new_failure(NEW, percent, seconds, traffic, PLAN, power=POWER)
    assert found is None
    assert reason in why


# --- the count and the gate's spread -----------------------------------------------------


@pytest.mark.parametrize(("mean", "deff"), [(0.5, 1.0), (17.0, 1.0), (17.0, 2.0), (300.0, 8.0)])
def test_the_count_has_its_mean_and_the_design_effect_times_it_as_variance(
    mean: float, deff: float
) -> None:
    top = math.ceil(mean + 15 * math.sqrt(deff * mean) + 15)
    chances = count_chances(0, top, mean, deff)
    assert math.fsum(chances) == pytest.approx(1.0, abs=1e-9)
    mu = math.fsum(k * p for k, p in enumerate(chances))
    variance = math.fsum((k - mu) ** 2 * p for k, p in enumerate(chances))
    assert (mu, variance) == pytest.approx((mean, deff * mean), rel=1e-6)


@pytest.mark.parametrize(
    ("share", "degrees", "low", "high"),
    [
        (1.0, math.inf, 0.0, 0.0),
        (1.0 + 1e-9, math.inf, 1.0, 1.0),
        # χ² over its degrees below the share, as four million draws of numpy's have it
        (1.0, 64.0, 0.522, 0.526),
        (1.5, 64.0, 0.993, 0.995),
        (0.5, 64.0, 0.00026, 0.00031),
        (1.5, 4.0, 0.799, 0.803),  # few degrees: a wide spread
    ],
)
def test_the_gates_design_effect_scatters_as_a_chi_square(
    share: float, degrees: float, low: float, high: float
) -> None:
    assert low <= below(share, degrees) <= high


# --- through the preview ----------------------------------------------------------------


def test_the_preview_shows_a_new_failure_as_a_share_of_treatments_requests() -> None:
    found = detectable(NEW, 1.0, 1800.0, ALONE, PLAN)
    assert found.new
    assert found.effect == found.delta == _figure(1.0, 1800.0)
    assert found.base == 0.0
    assert found.text() == f"{found.effect * 100:.2g}% of treatment's requests"


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (0.017, "1.7%"),
        (0.0016, "0.16%"),
        (4.2e-5, "0.0042%"),
        (0.005, "0.5%"),
        (0.17, "17%"),
        (1.0, "100%"),
    ],
)
def test_a_rate_is_shown_to_two_digits(rate: float, text: str) -> None:
    assert rate_text(rate) == text


def test_a_new_failures_rate_is_never_the_worst_relative_figure() -> None:
    plan = _plan(stages=[Stage(percent=1, min_duration=timedelta(minutes=30)), Stage(percent=100)])
    stage = stage_preview(plan, 0, ALONE)
    assert [d.guardrail for d in stage.guardrails][-1] == "new_failures"
    worst = stage.worst()
    assert worst is not None
    assert worst.guardrail != "new_failures"


@dataclass(slots=True)
class _Step(LastLook):
    """A look that catches every rate from ``at`` on, and none below."""

    at: float = 0.0

    def chance(self, rate: float) -> float:
        return 1.0 if rate >= self.at else 0.0


@pytest.mark.parametrize("at", [1e-7, 3e-4, 0.2, 1.0])
def test_the_smallest_rate_is_found_wherever_the_search_starts(at: float) -> None:
    """The search starts where about c²·d failures are expected (here 25 of 10,000): it
    halves or doubles from there."""
    look = _Step(exposures=(10_000.0, 90_000.0), width=5.0, tolerance=0.0, deff=1.0,
                 degrees=math.inf, at=at)  # fmt: skip
    found = smallest_rate([(1.0, look)], 10_000.0, POWER)
    assert found == pytest.approx(at, rel=1e-6)


def test_a_look_that_catches_nothing_gives_no_rate() -> None:
    look = _Step(exposures=(10_000.0, 90_000.0), width=5.0, tolerance=0.0, deff=1.0,
                 degrees=math.inf, at=2.0)  # fmt: skip
    assert smallest_rate([(1.0, look)], 10_000.0, POWER) is None
