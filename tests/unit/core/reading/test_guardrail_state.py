"""A guardrail's state in one wording, pinned by a table over every state and its edges."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from controller.core.reading.guardrail_state import (
    State,
    all_hold,
    compares,
    guardrail_state,
    standing_text,
    state_text,
)

INF = math.inf
LOWER, HIGHER = "lower_is_better", "higher_is_better"


@dataclass(frozen=True)
class Tried:
    delta: float | None
    lower: float | None
    upper: float | None
    tolerance: float | None = 0.0
    direction: str | None = LOWER
    regressed: bool = False


@pytest.mark.parametrize(
    ("case", "test", "state", "text"),
    [
        ("too few events", None, State.UNTESTED, "not yet tested (too few events)"),
        ("no estimate", Tried(None, 0.0, 1.0), State.UNTESTED, "not yet tested (no estimate yet)"),
        ("a NaN estimate", Tried(math.nan, 0.0, 1.0), State.UNTESTED,
         "not yet tested (no estimate yet)"),
        ("regressed", Tried(0.07, 0.0039, 0.13, regressed=True), State.REGRESSED,
         "regressed (interval wholly above tolerance)"),
        ("regressed, higher is better", Tried(-0.05, -0.09, -0.02, 0.01, HIGHER, True),
         State.REGRESSED, "regressed (interval wholly below tolerance)"),
        # +251% past a tolerance of 0, not yet significant: never "ok".
        ("past the tolerance", Tried(0.07, -0.02, 0.16), State.WATCHING,
         "watching (above tolerance, not yet significant)"),
        ("past it, unbounded", Tried(0.07, -INF, INF), State.WATCHING,
         "watching (above tolerance, not yet significant)"),
        ("below, higher is better", Tried(-0.02, -0.05, 0.01, 0.01, HIGHER), State.WATCHING,
         "watching (below tolerance, not yet significant)"),
        ("at the tolerance is within it", Tried(10.0, 4.0, 16.0, 10.0), State.UNDECIDED,
         "undecided (within tolerance so far, harm above not excluded)"),
        ("within, harm not excluded", Tried(2.0, -3.0, 12.0, 10.0), State.UNDECIDED,
         "undecided (within tolerance so far, harm above not excluded)"),
        ("within, higher is better", Tried(0.0, -0.03, 0.02, 0.01, HIGHER), State.UNDECIDED,
         "undecided (within tolerance so far, harm below not excluded)"),
        ("within, unbounded", Tried(0.0, -INF, INF, 0.01), State.UNTESTED,
         "not yet tested (interval not yet bounded)"),
        ("bound at the tolerance excludes harm", Tried(2.0, -6.0, 10.0, 10.0), State.HOLDS,
         "holds (harm above tolerance excluded)"),
        ("bound below it", Tried(-0.001, -0.004, 0.002, 0.005), State.HOLDS,
         "holds (harm above tolerance excluded)"),
        ("higher is better, excluded", Tried(0.01, -0.01, 0.03, 0.01, HIGHER), State.HOLDS,
         "holds (harm below tolerance excluded)"),
        ("no tolerance known", Tried(0.01, -0.01, 0.03, None), State.UNDECIDED,
         "undecided (its tolerance not known)"),
    ],
)  # fmt: skip
def test_each_state_has_one_wording(case: str, test: Tried | None, state: State, text: str) -> None:
    said = guardrail_state(test)
    assert (said.state, said.text) == (state, text)
    assert said.decided == (state in (State.REGRESSED, State.HOLDS))


def test_a_state_is_named_with_its_metric() -> None:
    watched = Tried(0.07, -0.02, 0.16)
    assert state_text("error_rate", watched) == (
        "error rate watching (above tolerance, not yet significant)"
    )
    assert state_text("latency_p95", None) == "p95 latency not yet tested (too few events)"


@pytest.mark.parametrize(
    ("test", "comparison", "state"),
    [
        (Tried(0.07, -0.02, 0.16), "none (no concurrent control)", State.NOT_COMPARED),
        (None, "none (no concurrent control)", State.NOT_COMPARED),
        (Tried(0.07, -0.02, 0.16), "control", State.WATCHING),
        (Tried(0.07, -0.02, 0.16), None, State.WATCHING),
    ],
)
def test_a_stage_without_a_control_reads_no_comparison_whatever_its_tests_count(
    test: Tried | None, comparison: str | None, state: State
) -> None:
    # late units of the other arm may still give a test a value; no arms were compared
    said = guardrail_state(test, compared=compares(comparison))
    assert said.state == state
    assert not said.decided if state is State.NOT_COMPARED else True
    if state is State.NOT_COMPARED:
        assert state_text("error_rate", test, compared=False) == (
            "error rate no comparison (no concurrent control: gated on its limits)"
        )


HELD, OPEN, PAST = (
    Tried(-0.001, -0.004, 0.002, 0.005),
    Tried(2.0, -3.0, 12.0, 10.0),
    Tried(0.07, -0.02, 0.16),
)


@pytest.mark.parametrize(
    ("case", "tests", "text", "hold"),
    [
        ("one holds", {"error_rate": HELD}, "held, harm excluded: error_rate", True),
        ("all hold", {"error_rate": HELD, "latency_p99": HELD},
         "held, harm excluded: error_rate, latency_p99", True),
        # the undecided one is named as such, never counted among those that hold
        ("one undecided", {"error_rate": HELD, "latency_p99": OPEN},
         "held, harm excluded: error_rate; advanced undecided, harm not excluded: latency_p99",
         False),
        ("those that hold come first", {"latency_p99": OPEN, "error_rate": HELD},
         "held, harm excluded: error_rate; advanced undecided, harm not excluded: latency_p99",
         False),
        ("none holds", {"error_rate": OPEN, "conversion_rate": PAST},
         "advanced undecided, harm not excluded: error_rate;"
         " advanced watching, harm not excluded: conversion_rate", False),
        ("an untested one never holds", {"error_rate": None},
         "advanced not yet tested, harm not excluded: error_rate", False),
        ("no guardrail", {}, "", False),
    ],
)  # fmt: skip
def test_an_advance_says_which_guardrails_held_and_which_did_not(
    case: str, tests: dict[str, Tried | None], text: str, hold: bool
) -> None:
    assert standing_text(tests) == text, case
    assert all_hold(tests) is hold, case
