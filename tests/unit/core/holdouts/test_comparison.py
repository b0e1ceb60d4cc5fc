"""The holdout report: everyone else against the holdout, per flag and in all, on units."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller.core.holdouts import FlagCells, holdout_report
from controller.core.rollouts import DEFAULT_PLAN, Guardrail, Plan
from controller.core.stats import ArmAggregate
from controller.core.wire import Holdout
from tests.support.holdout_sim import last_look as holdout_groups

HOLDOUT = Holdout(name="q3", percent=5)


def last_look(seed: int, *, rest_factor: float = 1.0) -> tuple[ArmAggregate, ArmAggregate]:
    return holdout_groups(seed, percent=HOLDOUT.percent, rest_factor=rest_factor)


def cells(flag: str, groups: tuple[ArmAggregate, ArmAggregate], plan: Plan = DEFAULT_PLAN
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
    # three comparisons (two flags and the cumulative), two guardrails each
    levels = [g.alpha for c in [*report.flags, report.cumulative] if c for g in c.guardrails]
    assert levels == [pytest.approx(0.01)] * 6


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
    plan = DEFAULT_PLAN.model_copy(update={"guardrails": [*DEFAULT_PLAN.guardrails, prometheus]})
    report = holdout_report(HOLDOUT, [cells("a", last_look(5), plan)], alpha=0.04)
    compared = report.flags[0].guardrails
    assert [g.guardrail for g in compared] == ["error_rate", "latency_p99"]
    assert [g.alpha for g in compared] == [pytest.approx(0.01)] * 2  # 0.04 / 2 comparisons / 2
