"""The console's rollout page says what a waiting stage still needs, as a short list in its
summary, the ring's warning first; its sample-ratio check reads "no units yet" on 0 against
0, never "ok"."""

from __future__ import annotations

import re

from controller.console.rollout import RolloutPage, rollout_detail
from controller.core.machine.gate import evaluate
from controller.core.reading.served_history import RolloutHistory
from controller.core.reading.views import RolloutStatus, describe
from controller.core.rollouts import Rollout
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from tests.unit.core.machine.gate.test_gate import arm, data
from tests.unit.core.machine.gate.test_stage_needs import TARGETED, at, running

EMPTY = RolloutHistory(flag="f", rollout_id="r", stages=[])


def page(r: Rollout, aggregates: FlagAggregates, minutes: float) -> str:
    now = at(minutes)
    status = RolloutStatus.model_validate(describe(r, evaluate(r, aggregates, now), now).served())
    return rollout_detail(RolloutPage(status, EMPTY))


def needs_of(html: str) -> list[tuple[str, str]]:
    """The summary's list of needs: each item's class and text, in order."""
    found = re.search(r'<dt>still needs</dt><dd class="stage-needs"><ul>(.*?)</ul></dd>', html)
    assert found is not None, html
    return re.findall(r'<li class="(\w+)">(.*?)</li>', found.group(1))


def test_a_waiting_stage_lists_its_countdown_units_and_untested_guardrails() -> None:
    few = data(arm(units=153, requests=12, exposures=12), arm(units=171, requests=12, exposures=12))
    assert needs_of(page(running(), few, 27.5)) == [
        ("need", "minimum stage time: 2 min 30 s left"),
        ("need", "units per arm: 153 of 300 (treatment 153, control 171)"),
        ("need", "error_rate not yet tested: 12 of 150 events in treatment"),
    ]


def test_the_next_move_counts_down_instead_of_a_raw_time() -> None:
    html = page(running(), data(arm(units=400), arm(units=400)), 27.5)
    move = re.search(r'<dd class="next-move">(.*?)</dd>', html)
    assert move is not None
    assert move.group(1) == "minimum stage time 0:30:00: 2 min 30 s left"


def test_a_ring_with_no_units_warns_first_and_its_sample_ratio_is_not_ok() -> None:
    html = page(running(plan=TARGETED), data(ArmAggregate(), ArmAggregate()), 5)
    needs = needs_of(html)
    assert needs[0][0] == "warning"
    assert needs[0][1].startswith("no units seen in this ring (country in [&quot;NZ&quot;])")
    assert "load" in needs[0][1]
    assert "segments" in needs[0][1]
    assert needs[1:] == [
        ("need", "minimum stage time: 25 min left"),
        ("need", "units per arm: 0 of 300 (treatment 0, control 0)"),
        ("need", "error_rate not yet tested: 0 of 150 events in treatment"),
    ]
    assert '<p class="srm none"><b>no units yet</b>: 0 treatment units against 0 expected' in html
    assert "<b>ok</b>" not in html


def test_a_stage_the_gate_moves_on_lists_nothing() -> None:
    html = page(running(), data(arm(units=400), arm(units=400)), 31)
    assert "still needs" not in html
    assert '<p class="srm ok"><b>ok</b>' in html
