"""The gate's evidence as sentences: the real gate's evidence, read back in words."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from controller.core.machine.gate import evaluate
from controller.core.rollouts import Briefing
from controller.core.rollouts.advice import FENCE, build_messages
from controller.core.rollouts.briefing import sentences
from controller.core.rollouts.plan_parts import Guardrail
from controller.core.wire import tolerant
from controller.daemon.rollouts.consulting import gate_data
from tests.unit.core.machine.gate.test_gate import HEALTHY, LATE, arm, data, plan, rollout


def said(agg: Any, **changes: object) -> str:
    run = rollout(plan(**changes)) if changes else rollout()
    return "\n".join(sentences(gate_data(run, evaluate(run, agg, LATE), LATE)))


@pytest.mark.parametrize(
    ("case", "agg", "changes", "expected"),
    [
        ("stage", HEALTHY, {}, "stage 1 of 2 at 10% of units, next 100%, 3600 s in the stage"),
        ("verdict", HEALTHY, {}, "the statistics say advance"),
        ("units", HEALTHY, {}, "units: treatment 1111, control 10000."),
        (
            "error rate in words",
            HEALTHY,
            {},
            "error_rate: treatment 0.50% (500/100000 requests) vs control 0.50% (500/100000),"
            " delta +0 pp.",
        ),
        ("guardrail holds", HEALTHY, {}, "guardrail error_rate (higher is worse): delta +0 pp"),
        ("no regression", HEALTHY, {}, "tolerance 0 pp: no regression shown."),
        ("latency in ms", HEALTHY, {}, "guardrail latency_p99 (higher is worse): delta +0 ms"),
        (
            "regression",
            data(arm(units=1_111, errors=2_000), arm(units=10_000)),
            {},
            "tolerance 0 pp: regression shown.",
        ),
        (
            "ungated metric",
            data(arm(units=1_111, conversions=2_000), arm(units=10_000)),
            {"guardrails": [Guardrail(metric="error_rate")]},
            "conversion_rate: treatment 4.00% (2000/50000 exposures) vs control 10.00%"
            " (5000/50000), delta -6 pp (not a guardrail).",
        ),
        (
            "too few events",
            data(arm(units=5, requests=10), arm(units=50, requests=10)),
            {},
            "guardrail error_rate: not tested yet, too few events.",
        ),
        ("srm", HEALTHY, {}, "1111 treatment units against 1111 expected (10.0% planned)"),
        (
            "srm flagged",
            data(arm(units=2_000), arm(units=10_000)),
            {},
            "sequential p 8.7e-108, threshold 0.001: mismatch flagged.",
        ),
    ],
)
def test_the_evidence_reads_as_sentences(
    case: str, agg: Any, changes: dict[str, object], expected: str
) -> None:
    assert expected in said(agg, **changes), case


@pytest.mark.parametrize(
    "odd",
    [
        {},
        {"evidence": "x"},
        {"evidence": {"arms": {"treatment": [], "control": None}, "guardrails": {"e": 3}}},
        {"evidence": {"guardrails": {"error_rate": {"delta": "nan", "lower": True}}}},
        {"evidence": {"srm": {"observed_treatment": "9"}}, "stage": "one", "percent": None},
        {"evidence": {"arms": {"treatment": {"requests": 0}, "control": {"requests": 0}}}},
    ],
)
def test_odd_evidence_costs_sentences_never_the_consultation(odd: dict[str, Any]) -> None:
    lines = sentences(tolerant(Briefing, odd, partial=True))
    assert all(isinstance(line, str) and "<" not in line for line in lines)


def test_the_prompt_shows_the_sentences_inside_the_fence_and_no_raw_statistics() -> None:
    run = rollout(plan(min_duration=timedelta(0)))
    shown = gate_data(run, evaluate(run, HEALTHY, LATE), LATE)
    user = build_messages(shown)[1]["content"]
    head, block, tail = user.split(FENCE)
    parsed = json.loads(block)
    assert parsed["summary"] == sentences(shown)
    assert "evidence" not in parsed
    assert "variance" not in block
    assert "summary" not in head + tail
