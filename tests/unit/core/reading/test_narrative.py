"""The narrative checker: a model's sentences survive only if every number is in the facts."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.common.numerals import Unreadable, numbers_in
from controller.core.reading.narrative import accepted, check, messages, unsupported

FACTS = [
    "The rollout of checkout is rolled_back; it serves 0%.",
    "stage 3/5 (25%), lasted 70 s, ended by rollback.",
    "stage 3/5 (25%), treatment: 1,523 units, 97 errors in 1,523 requests.",
    "stage 3/5 (25%), guardrail error_rate: regressed, delta 0.0204, bound [0.01688, 0.02392],"
    " p 6.5e-69.",
    "stage 2/5 (5%), guardrail error_rate: no regression shown, delta -0.0041, bound"
    " [-0.0255, 0.0336], p 1.",
    "stage 3/5 (25%), guardrail latency_p99: not tested yet.",
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
        ("It failed at stage 4/5 (50%).", ["4/5", "50%"]),
        ("About 1/2 of the units at stage 2/5 saw it.", ["1/2"]),  # a fraction, not a label
        ("Treatment had 1,524 units.", ["1,524"]),
        ("No numbers at all, just words.", []),
        ("At 10:01 it was rolled back.", ["10"]),  # no time among the facts (1 is: p 1)
        ("Guardrail latency_p99 held; p99 and error_rate too.", []),  # names copied as written
        ("It served 1,523 units, fifteen hundred and twenty-three.", []),  # in words: 1523
        ("The p-value was 6.5e-69, the delta 2.04 percent.", []),
        # A ratio is a claim no fact states, whatever its number (5 is in 3/5)
        ("Treatment saw 5 times the error rate of control.", ["5 times"]),
        ("Errors ran five times the control's.", ["five times"]),
        ("Latency rose 3 \u00d7 over control.", ["3 \u00d7"]),
        ("Errors rose 4 fold.", ["4 fold"]),
        # A percent must be a fact's percent or share, not a count or a p of 1
        ("It reached 100% of its users.", ["100%"]),
        ("It served 97%.", ["97%"]),
        ("It served 1,523 percent.", ["1,523 percent"]),
        ("It served 25% and 0%.", []),
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
        ("stage 3/5", [("3", "3", 0, False), ("5", "5", 0, False)]),
        ("5 000 000 requests", [("5 000 000", "5000000", 0, False)]),
        ("forty thousand users", [("forty thousand", "40000", 0, False)]),
        ("one hundred and five percent", [("one hundred and five", "105", 0, True)]),
        ("1.5 million", [("1.5 million", "1500000.0", 0, False)]),
        (
            "p=0.03, 10:01",
            [("0.03", "0.03", 2, False), ("10", "10", 0, False), ("01", "1", 0, False)],
        ),
    ],
)
def test_numbers_are_read_as_written(text: str, expected: list[tuple[str, str, int, bool]]) -> None:
    found = [(n.text, str(n.value), n.decimals, n.percent) for n in numbers_in(text)]  # type: ignore[union-attr]
    assert found == expected


@pytest.mark.parametrize(
    "text",
    [
        ".74",
        "\u039474%",  # Δ74%
        "x40",
        "v7",
        "latency_p99",  # a number glued to letters: read only if the facts write it so
        "\u00bd",  # ½
        "10\u2076",  # 10⁶
        "\u0667\u0664",  # 74 in Arabic-Indic digits
        "\uff17\uff14%",  # 74% in full-width digits
        "\u216b",  # Roman numeral twelve
        "\u56db",  # CJK four
        "\u2460",  # circled one
        "twice",
        "half",
        "doubled",
        "dozens",
        "one-off",
        "0.01-0.02",
        "5th",
    ],
)
def test_a_number_the_reader_cannot_turn_into_a_value_is_unreadable(text: str) -> None:
    assert numbers_in(f"it was {text} here") == [Unreadable(text)]


BYPASSES = [
    "The error rate rose by .74 points.",
    "Treatment was \u039474% worse than control.",
    "Errors ran x40 the control's.",
    "It served 5 000 000 requests.",
    "About \u00bd of the units saw it.",
    "It saw forty thousand requests.",
    "Latency rose 10\u2076 times.",
    "Treatment had \u0667\u0664 errors.",
    "Errors rose by \uff17\uff14%.",
    "About 1/2 of the units saw it.",
    "The error rate rose up74% overnight.",
    "The error rate doubled.",
    "Treatment saw 5 times the error rate of control, and it reached 100% of its users.",
    "Treatment saw 5 times the error rate of control.",
    "The rollout reached 100% of its users.",
]


@pytest.mark.parametrize("sentence", BYPASSES)
def test_a_sentence_with_a_number_that_is_not_checked_is_never_kept(sentence: str) -> None:
    """Each of these passed the check before: the number pattern missed them."""
    text, why = accepted({"narrative": sentence}, FACTS)
    assert text is None
    assert "not in the evidence or cannot be checked" in why


@pytest.mark.parametrize("sentence", BYPASSES)
def test_only_the_sentence_with_such_a_number_is_dropped(sentence: str) -> None:
    true = "Rolled back at stage 3/5 (25%) after 70 s."
    text, why = accepted({"narrative": f"{true} {sentence} Treatment had 97 errors."}, FACTS)
    assert text == f"{true} Treatment had 97 errors."
    assert why.startswith("1 of its 3 sentences dropped: they held numbers")


def test_check_counts_the_sentences_kept_and_dropped() -> None:
    checked = check("It served 25%. It served 30%! It served ½? Done.", FACTS)
    assert (checked.text, checked.kept, checked.dropped) == ("It served 25%. Done.", 2, 2)
    assert checked.wrong == ("30%", "½")


@pytest.mark.parametrize(
    ("reply", "kept", "why"),
    [
        ({"narrative": "Rolled back at stage 3/5 (25%)."}, True, ""),
        ({"narrative": "  Rolled back\nat 25%.  "}, True, ""),
        (
            {"narrative": "Rolled back at 30%."},
            False,
            "not in the evidence or cannot be checked (30%)",
        ),
        ({"narrative": ""}, False, "no narrative"),
        ({"text": "hi"}, False, "no narrative"),
        ("just a string", False, "no narrative"),
        ({"narrative": "x" * 2000}, False, "too long"),
    ],
)
def test_a_reply_is_kept_or_dropped_with_the_reason(reply: Any, kept: bool, why: str) -> None:
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
