"""The console says, under each guardrail's chart, what the running stage can detect by its
minimum at its current traffic and how much longer it needs for a +50% regression."""

from __future__ import annotations

import re
from typing import Any

from controller.console.figures import GuardrailSpec
from controller.console.rollout import RolloutPage, rollout_detail
from controller.core.reading.served_history import RolloutHistory
from controller.core.reading.views import RolloutStatus, describe
from tests.unit.console.test_console_widening import caption, published_test
from tests.unit.core.machine.gate.test_gate import EARLY, rollout

EMPTY = RolloutHistory(flag="f", rollout_id="r", stages=[])
SPECS = [GuardrailSpec("error_rate"), GuardrailSpec("latency_p95")]
ARMS = {
    "treatment": {"units": 200, "exposures": 1000, "requests": 1000, "errors": 10},
    "control": {"units": 3800, "exposures": 19000, "requests": 19000, "errors": 190},
}


def page(evidence: dict[str, Any], **over: Any) -> str:
    served = describe(rollout(), None, EARLY).served() | {"evidence": evidence} | over
    return rollout_detail(RolloutPage(RolloutStatus.model_validate(served), EMPTY, (), (), SPECS))


def test_a_running_stage_says_what_it_can_detect_under_each_tested_guardrail() -> None:
    tests = {
        "error_rate": published_test(variance=4e-6, n=20_000),
        "latency_p95": "insufficient data",
    }
    html = page({"arms": ARMS, "guardrails": tests}, time_in_stage_s=600.0, verdict="hold")
    said = caption(html, "error_rate")
    assert re.search(
        r'<span class="stage-power">Detectable from \+\d+% by the stage&#x27;s minimum'
        r" \(80% power\); \+50% (now|in .+ more|in over 30 days)</span>$",
        said,
    ), said
    assert "stage-power" not in caption(html, "latency_p95")


def test_a_stage_with_no_counts_to_take_a_base_from_says_nothing() -> None:
    tests = {"error_rate": published_test(variance=4e-6, n=20_000)}
    html = page({"guardrails": tests}, time_in_stage_s=600.0, verdict="hold")
    assert "stage-power" not in caption(html, "error_rate")
