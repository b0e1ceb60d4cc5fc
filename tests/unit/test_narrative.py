"""The narrative checker: a model's sentences survive only if every number is in the facts."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.narrative import accepted, messages, numbers_in, unsupported

FACTS = [
    "The rollout of checkout is rolled_back; it serves 0%.",
    "stage 3/5 (25%), lasted 70 s, ended by rollback.",
    "stage 3/5 (25%), treatment: 1,523 units, 97 errors in 1,523 requests.",
    "stage 3/5 (25%), guardrail error_rate: regressed, delta 0.0204, bound [0.01688, 0.02392],"
    " p 6.5e-69.",
    "stage 2/5 (5%), guardrail error_rate: no regression shown, delta -0.0041, bound"
    " [-0.0255, 0.0336], p 1.",
]


@pytest.mark.parametrize(
    ("narrative", "wrong"),
    [
        ("The rollout was rolled back at stage 3/5 (25%) after 70 s.", []),
        ("Treatment had 97 errors in 1,523 requests; delta 0.0204.", []),
        ("Treatment had 97 errors in 1523 requests.", []),  # thousands written without a comma
        ("The error rate was 2.04% higher (bound 0.01688 to 0.02392).", []),  # share as percent
        ("The bound excluded zero: [0.0169, 0.0239].", []),  # rounded, as shown
        ("At 5% the error rate fell by 0.0041.", []),  # a magnitude, without its sign
        ("p was 6.5e-69.", []),
        ("The error rate rose by 0.05.", ["0.05"]),  # invented
        ("Treatment had 98 errors.", ["98"]),  # garbled
        ("The delta was 0.02.", ["0.02"]),  # one significant digit: rounding not accepted
        ("The delta was -0.0204.", ["-0.0204"]),  # the wrong sign
        ("It failed at stage 4/5 (50%).", ["4", "50%"]),
        ("Treatment had 1,524 units.", ["1,524"]),
        ("No numbers at all, just words.", []),
        ("At 10:01 it was rolled back.", ["10"]),  # no time among the facts (1 is: p 1)
    ],
)
def test_every_number_must_be_in_the_facts(narrative: str, wrong: list[str]) -> None:
    assert unsupported(narrative, FACTS) == wrong


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,523 units", [("1,523", "1523", 0, False)]),
        ("delta \u22120.5 pp", [("\u22120.5 pp", "-0.5", 1, True)]),  # a minus sign
        ("25% and 6.5e-69", [("25%", "25", 0, True), ("6.5e-69", "6.5E-69", 70, False)]),
        ("latency_p99 and v7", []),
        ("stage 3/5", [("3", "3", 0, False), ("5", "5", 0, False)]),
    ],
)
def test_numbers_are_read_as_written(text: str, expected: list[tuple[str, str, int, bool]]) -> None:
    found = [(n.text, str(n.value), n.decimals, n.percent) for n in numbers_in(text)]
    assert found == expected


@pytest.mark.parametrize(
    ("reply", "kept", "why"),
    [
        ({"narrative": "Rolled back at stage 3/5 (25%)."}, True, ""),
        ({"narrative": "  Rolled back\nat 25%.  "}, True, ""),
        ({"narrative": "Rolled back at 30%."}, False, "not in the evidence (30%)"),
        ({"narrative": ""}, False, "no narrative"),
        ({"text": "hi"}, False, "no narrative"),
        ("just a string", False, "no narrative"),
        ({"narrative": "x" * 2000}, False, "too long"),
    ],
)
def test_a_reply_is_kept_whole_or_dropped_with_the_reason(reply: Any, kept: bool, why: str) -> None:
    text, reason = accepted(reply, FACTS)
    assert (text is not None) is kept
    assert why in reason
    if text is not None:
        assert "\n" not in text
        assert text == text.strip()


def test_the_prompt_lists_the_facts_and_asks_for_them_verbatim() -> None:
    system, user = messages(FACTS)
    assert "Copy every number exactly" in system["content"]
    assert user["content"].splitlines()[1:] == [f"- {fact}" for fact in FACTS]
