"""The holdout report: everyone else against the holdout, per flag and in all, on units."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller.core.holdouts import FlagCells, People, holdout_report
from controller.core.rollouts import DEFAULT_PLAN, Guardrail, Plan
from controller.core.stats import ArmAggregate
from controller.core.wire import Holdout
from tests.support.holdout_sim import last_look as holdout_groups

HOLDOUT = Holdout(name="q3", percent=5)
EVEN = DEFAULT_PLAN.model_copy(update={"alpha_weights": None})
"""The default plan with alpha split evenly (the default weighs the error rate twice): a
flag's comparison and the cumulative then test each guardrail at the same level."""


def last_look(seed: int, *, rest_factor: float = 1.0) -> tuple[ArmAggregate, ArmAggregate]:
    return holdout_groups(seed, percent=HOLDOUT.percent, rest_factor=rest_factor)


def cells(flag: str, groups: tuple[ArmAggregate, ArmAggregate], plan: Plan = EVEN
          ) -> FlagCells:  # fmt: skip
    return FlagCells(flag=flag, plan=plan, versions=(1, 2), rest=groups[0], holdout=groups[1])


@pytest.mark.parametrize(
    ("factors", "regressed", "cumulative"),
    [
        ((1.0, 1.0, 1.0), [], False),
        ((1.0, 3.0, 1.0), ["b"], True),
        ((3.0, 3.0, 3.0), ["a", "b", "c"], True),
    ],
)
def test_a_release_that_raised_errors_is_named_and_the_cumulative_shows_it(
    factors: tuple[float, float, float], regressed: list[str], cumulative: bool
) -> None:
    flags = [cells(name, last_look(seed, rest_factor=f))
             for seed, (name, f) in enumerate(zip("abc", factors, strict=True))]  # fmt: skip
    report = holdout_report(HOLDOUT, flags)
    named = [c.scope for c in report.flags if c.regressed]
    assert named == regressed
    assert report.cumulative is not None
    assert report.cumulative.regressed is cumulative
    errors = {g.guardrail: g for g in report.cumulative.guardrails}["error_rate"]
    assert errors.unit_of_analysis == "unit"
    assert errors.rest is not None
    assert errors.holdout is not None
    if cumulative:
        assert errors.lower is not None
        assert errors.lower > 0


def test_alpha_is_split_over_the_comparisons_then_the_guardrails() -> None:
    groups = last_look(7)
    report = holdout_report(HOLDOUT, [cells("a", groups), cells("b", groups)], alpha=0.06)
    # three comparisons (two flags and the cumulative), three guardrails each: new_failures
    # at its share over its 17 tests
    levels = [g.alpha for c in [*report.flags, report.cumulative] if c for g in c.guardrails]
    share = 0.06 / 3 / 3
    assert levels == [pytest.approx(share), pytest.approx(share), pytest.approx(share / 17)] * 3


def test_a_flags_comparison_weighs_its_guardrails_as_its_plan_does() -> None:
    groups = last_look(7)
    report = holdout_report(HOLDOUT, [cells("a", groups, DEFAULT_PLAN)], alpha=0.06)
    levels = [g.alpha for g in report.flags[0].guardrails]
    share = 0.06 / 2 / 4  # two comparisons; the error rate weighs 2 of 4
    assert levels == [pytest.approx(2 * share), pytest.approx(share), pytest.approx(share / 17)]


def test_a_holdout_whose_share_of_units_is_wrong_is_untrusted_everywhere() -> None:
    rest, held = last_look(3)
    skewed = replace(held, units=held.units * 3)
    report = holdout_report(HOLDOUT, [cells("a", (rest, skewed)), cells("b", last_look(4))])
    assert [c.sample_ratio_mismatch for c in report.flags] == [True, False]
    assert [c.trusted for c in report.flags] == [False, True]
    assert report.cumulative is not None
    assert report.cumulative.trusted is False


def test_too_little_data_is_said_not_read_as_healthy() -> None:
    report = holdout_report(HOLDOUT, [cells("a", (ArmAggregate(), ArmAggregate()))])
    assert {g.verdict for g in report.flags[0].guardrails} == {"too_little_data"}
    assert not report.flags[0].regressed


def test_no_flag_names_it_gives_no_cumulative() -> None:
    report = holdout_report(HOLDOUT, [])
    assert report.flags == []
    assert report.cumulative is None


@pytest.mark.parametrize("alpha", [0.0, 0.5, -1.0, 5e-324])
def test_an_alpha_out_of_range_is_refused(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        holdout_report(HOLDOUT, [], alpha=alpha)


def test_only_guardrails_on_events_are_compared_and_alpha_is_theirs() -> None:
    prometheus = Guardrail.model_validate({
        "metric": "error_rate", "source": "prometheus",
        "prometheus": {
            "count": 'sum(increase(errors_total{arm="{{arm}}"}[{{window}}]))',
            "total": 'sum(increase(requests_total{arm="{{arm}}"}[{{window}}]))',
        },
    })  # fmt: skip
    plan = EVEN.model_copy(update={"guardrails": [*EVEN.guardrails, prometheus]})
    report = holdout_report(HOLDOUT, [cells("a", last_look(5), plan)], alpha=0.04)
    compared = report.flags[0].guardrails
    assert [g.guardrail for g in compared] == ["error_rate", "latency_p99", "new_failures"]
    share = 0.04 / 2 / 3  # 2 comparisons, 3 guardrails on events; new_failures over its 17
    assert [g.alpha for g in compared] == [
        pytest.approx(share),
        pytest.approx(share),
        pytest.approx(share / 17),
    ]


def test_two_flags_over_the_same_people_count_each_person_once() -> None:
    # Each person's requests reported under both flags alike: the cumulative is one flag
    rest, held = last_look(8, rest_factor=1.3)
    flags = [cells("a", (rest, held)), cells("b", (rest, held))]
    report = holdout_report(HOLDOUT, flags, people=People(rest.units, held.units))
    together, alone = report.cumulative, report.flags[0]
    assert together is not None
    assert (together.rest_units, together.holdout_units) == (rest.units, held.units)
    assert (together.rest_requests, together.overlap) == (2 * rest.requests, 2.0)
    errors, one = together.guardrails[0], alone.guardrails[0]
    assert errors.guardrail == one.guardrail == "error_rate"
    assert errors.lower == pytest.approx(one.lower, rel=1e-9)
    assert errors.upper == pytest.approx(one.upper, rel=1e-9)
    # Counted once per flag, the same people read as twice as many: another test
    apart = holdout_report(HOLDOUT, flags).cumulative
    assert apart is not None
    assert (apart.rest_units, apart.overlap) == (2 * rest.units, 1.0)
    assert apart.guardrails[0].lower != pytest.approx(one.lower, rel=1e-3)


def test_flags_over_different_people_add_their_units() -> None:
    groups = [last_look(9), last_look(10)]
    flags = [cells("a", groups[0]), cells("b", groups[1])]
    people = People(sum(g[0].units for g in groups), sum(g[1].units for g in groups))
    assert holdout_report(HOLDOUT, flags, people=people) == holdout_report(HOLDOUT, flags)


@pytest.mark.parametrize(
    ("rest", "held", "mismatch", "said"),
    [
        # A 5% holdout whose events never say cohort holdout: about 150 expected, none seen
        (3_000, 0, True, "no held-out units against 150 expected (do the apps report"),
        (3_000, 1, True, "1 held-out unit against 150 expected (sequential p = "),
        (2_850, 150, False, "150 held-out units against 150 expected (sequential p = 1)"),
        (2_850, 450, True, "450 held-out units against 165 expected"),
        # Too few expected for none to mean anything
        (57, 0, False, "0 held-out units against 3 expected"),
        (140, 0, False, "0 held-out units against 7 expected"),
        (0, 0, False, "0 held-out units against 0 expected"),
        (0, 150, True, "no units of everyone else against 142 expected"),
    ],
)
def test_a_missing_holdout_is_a_sample_ratio_mismatch_with_its_reason(
    rest: int, held: int, mismatch: bool, said: str
) -> None:
    groups = (ArmAggregate(units=rest), ArmAggregate(units=held))
    report = holdout_report(HOLDOUT, [cells("a", groups), cells("b", last_look(4))])
    compared = report.flags[0]
    assert (compared.sample_ratio_mismatch, compared.trusted) == (mismatch, not mismatch)
    assert compared.sample_ratio is not None
    assert compared.sample_ratio.startswith(said)
    assert report.cumulative is not None
    assert report.cumulative.trusted is not mismatch


def test_the_same_people_under_two_flags_are_no_more_evidence_than_one_flag() -> None:
    # Each request reported under both flags: a unit's events stay in its bucket under
    # both, so the cumulative is as sure as one flag, not as sure as twice the people
    (rest, held), other = last_look(12), last_look(13)

    def widths(second: tuple[ArmAggregate, ArmAggregate], people: People) -> tuple[float, float]:
        report = holdout_report(HOLDOUT, [cells("a", (rest, held)), cells("b", second)],
                                people=people)  # fmt: skip
        assert report.cumulative is not None
        found = []
        for compared in (report.cumulative, report.flags[0]):
            errors = compared.guardrails[0]
            assert errors.lower is not None
            assert errors.upper is not None
            found.append(errors.upper - errors.lower)
        return found[0], found[1]

    together, alone = widths((rest, held), People(rest.units, held.units))
    assert together == pytest.approx(alone, rel=1e-9)
    apart, _ = widths(other, People(rest.units + other[0].units, held.units + other[1].units))
    assert apart < together / 1.25
