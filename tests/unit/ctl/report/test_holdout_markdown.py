"""``rolloutctl report --holdout``: what a person reads, and the arguments it refuses."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller.core.holdouts import FlagCells, People, holdout_report
from controller.core.rollouts import DEFAULT_PLAN
from controller.core.stats import ArmAggregate
from controller.core.wire import Holdout
from controller.ctl.app import main
from controller.ctl.report.holdout_report import markdown
from tests.support.holdout_sim import last_look as groups

HOLDOUT = Holdout(name="q4", percent=5)


def last_look(seed: int, *, rest_factor: float = 1.0) -> tuple[ArmAggregate, ArmAggregate]:
    return groups(seed, percent=HOLDOUT.percent, rest_factor=rest_factor)


def test_the_markdown_names_the_regression_the_cumulative_and_what_is_no_evidence() -> None:
    rest, held = last_look(1, rest_factor=3.0)
    flags = [
        FlagCells("checkout", DEFAULT_PLAN, (3, 4), rest, held),
        FlagCells("search", DEFAULT_PLAN, (1,), *last_look(2)),
        FlagCells("skewed", DEFAULT_PLAN, (1,), rest, replace(held, units=held.units * 4)),
    ]
    people = People(rest.units * 2, held.units * 4)  # skewed's units hold checkout's
    shown = markdown(holdout_report(HOLDOUT, flags, people=people))
    cumulative, _, per_flag = shown.partition("## checkout (flag versions 3, 4)")
    assert "## Everything released, together" in cumulative
    assert "| error_rate |" in cumulative
    assert "**Not evidence**" in cumulative  # a flag's sample-ratio check failed
    assert f"Units: {rest.units * 2:,} everyone else, {held.units * 4:,} held out;" in cumulative
    assert "Each unit is counted once, though the flags count 1.50 times as many" in cumulative
    checkout, _, rest_of = per_flag.partition("## search")
    assert "**regressed**" in checkout
    assert f"Sample ratio as expected: {held.units:,} held-out units against 2,000" in checkout
    search, _, skewed = rest_of.partition("## skewed")
    assert "**regressed**" not in search
    said = f"**Sample ratio mismatch**: {4 * held.units:,} held-out units against 2,"
    assert said in skewed
    assert "over all 4 comparisons" in shown


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["report"], "name a FLAG, or a holdout"),
        (["report", "checkout", "--holdout", "q4"], "name a FLAG, or a holdout"),
        (["report", "--holdout", "q4", "--alpha", "0.5"], "--alpha"),
        (["report", "--holdout", "q4", "--html", "x.html"], "--html"),
        (["report", "checkout", "--alpha", "0.01"], "--since and --alpha are for"),
        (["report", "checkout", "--since", "2026-10-01"], "--since and --alpha are for"),
        (["report", "--holdout", "q4", "--since", "last week"], "--since"),
    ],
)
def test_a_holdout_report_asked_for_wrongly_is_refused_with_a_reason(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--url", "http://127.0.0.1:9"]) == 2
    assert says in capsys.readouterr().err
