"""The console says, under each guardrail's chart, why its interval is as wide as it is: how
much units widen it and the units that costs the stage, or that it assumes independent
requests."""

from __future__ import annotations

import re
from typing import Any

import pytest

from controller.console.figures import GuardrailSpec
from controller.console.rollout import RolloutPage, rollout_detail
from controller.core.reading.served_history import RolloutHistory
from controller.core.reading.views import RolloutStatus, describe
from tests.unit.core.machine.gate.test_gate import EARLY, rollout

EMPTY = RolloutHistory(flag="f", rollout_id="r", stages=[])
SPECS = [GuardrailSpec("error_rate"), GuardrailSpec("latency_p95")]
WIDENED = (
    "Units that send many requests or fail together make the interval 2.3 times as wide:"
    " the stage needs about 5.3 times as many units to see the same difference"
)
INDEPENDENT = (
    "Assumes independent requests: its interval is not widened for units that send many"
    " requests or fail together"
)


def published_test(**over: Any) -> dict[str, Any]:
    """A guardrail's test as the gate publishes it, with ``over``."""
    return {
        "delta": 0.001, "variance": 1e-6, "n": 4_000, "half_width": 0.004, "lower": -0.003,
        "upper": 0.005, "regressed": False, "direction": "lower_is_better", "tolerance": 0.0,
        "alpha": 0.0033, "n_tune": 5_000, "p_value": 1.0, **over,
    }  # fmt: skip


def page(guardrails: dict[str, Any]) -> str:
    served = describe(rollout(), None, EARLY).served() | {"evidence": {"guardrails": guardrails}}
    return rollout_detail(RolloutPage(RolloutStatus.model_validate(served), EMPTY, (), (), SPECS))


def caption(html: str, metric: str) -> str:
    found = re.search(rf'<figure class="guardrail" data-metric="{metric}">.*?</figure>', html)
    assert found is not None, metric
    text = re.search(r"<figcaption>(.*?)</figcaption>", found.group(0))
    assert text is not None
    return text.group(1)


@pytest.mark.parametrize(
    ("test", "said"),
    [
        (published_test(unit_of_analysis="unit", design_effect=5.29, widening=2.3), WIDENED),
        (published_test(unit_of_analysis="unit", design_effect=1.0, widening=1.0), None),
        (published_test(unit_of_analysis="unit"), None),  # the buckets could not say
        (published_test(unit_of_analysis="request"), INDEPENDENT),  # a Prometheus guardrail
        ("insufficient data", None),
    ],
)
def test_each_guardrails_caption_says_why_its_interval_is_as_wide_as_it_is(
    test: object, said: str | None
) -> None:
    html = page({"error_rate": test, "latency_p95": "insufficient data"})
    shown = caption(html, "error_rate")
    assert shown.startswith("error_rate: Δ (line) and its always-valid bound")  # chart first
    if said is None:
        assert 'class="widening"' not in shown
    else:
        assert shown.endswith(f'. <span class="widening">{said}</span>')
    assert 'class="widening"' not in caption(html, "latency_p95")  # each its own


DOMINANT = {"arm": "treatment", "events_share": 0.41, "variance_share": 0.93}
BOT = (
    "One bucket of units in treatment sent 41% of its events and carries 93% of its variance:"
    " most likely one unit (a bot, a broken account) decides this metric"
)


@pytest.mark.parametrize(
    ("test", "said"),
    [
        (
            published_test(
                unit_of_analysis="unit", design_effect=5.29, widening=2.3, dominant=DOMINANT
            ),
            f'. <span class="widening">{WIDENED}</span>. <span class="dominant">{BOT}</span>',
        ),
        (
            published_test(unit_of_analysis="unit", dominant=DOMINANT),
            f'. <span class="dominant">{BOT}</span>',
        ),
        (published_test(unit_of_analysis="unit", design_effect=5.29, widening=2.3), None),
        ("insufficient data", None),
    ],
)  # fmt: skip
def test_a_guardrails_caption_names_the_unit_that_decides_it(
    test: object, said: str | None
) -> None:
    """After the widening, the bucket of units that carries most of the guardrail's variance,
    in the gate's words: in practice one bot or broken account."""
    html = page({"error_rate": test, "latency_p95": "insufficient data"})
    shown = caption(html, "error_rate")
    if said is None:
        assert 'class="dominant"' not in shown
    else:
        assert shown.endswith(said)
    assert 'class="dominant"' not in caption(html, "latency_p95")
