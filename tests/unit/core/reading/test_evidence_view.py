"""A decision's evidence read part by part: an odd part is a blank, never an error; the
sample-ratio word with the holdout's cohort: "ok" never stands alone over a missing one."""

from __future__ import annotations

import math

import pytest

from controller.core.reading.evidence_view import (
    MAX_AUDIENCE_CHARS,
    MAX_NAMED,
    ArmTally,
    Evidence,
    GuardrailTest,
    HoldoutCheck,
    PolicyEntry,
    Position,
    Ring,
    SrmCheck,
    holdout_line,
    ratio_word,
    where_decided,
)
from controller.core.wire.messages import Decision, decision_or_alert


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, Evidence()),
        ("not an object", Evidence()),
        ({"arms": [1], "guardrails": "x", "srm": 5, "at_stage": "x", "advisor": 1}, Evidence()),
        (
            {"arms": {"treatment": {"units": 5, "errors": True, "requests": 1.5}, "control": "x"}},
            Evidence(arms={"treatment": ArmTally(units=5), "control": None}),
        ),
        (
            {"guardrails": {"e": "insufficient data",
                            "l": {"delta": "-inf", "lower": "x", "p_value": 0.5, "regressed": 1}}},
            Evidence(guardrails={"e": None, "l": GuardrailTest(delta=-math.inf, p_value=0.5)}),
        ),
        (
            {"srm": {"flagged": True, "sequential_p_value": 0.004, "chi2": "NaN"}},
            Evidence(srm=SrmCheck(flagged=True, sequential_p_value=0.004)),
        ),
        (
            {"at_stage": {"index": 2, "of": 5, "percent": 25}, "actor": 5, "key_id": "ops-1"},
            Evidence(at_stage=Position(index=2, of=5, percent=25.0), key_id="ops-1"),
        ),
        ({"window": {"opens_at": 0}}, Evidence.read({"window": {"opens_at": "1970-01-01T00:00Z"}})),
        (
            {"policy": {"trigger": "no_traffic", "action": 3}},
            Evidence(policy=PolicyEntry(trigger="no_traffic")),
        ),
        ({"future_part": {"of": "a newer gate"}}, Evidence()),
        ({"audience": "everyone"}, Evidence()),
        (
            {"audience": {"rollout": None, "stage": "segment(\"staff\")", "percent": 100}},
            Evidence(audience=Ring(stage='segment("staff")', percent=100.0)),
        ),
        (
            {"audience": {"rollout": "x" * (2 * MAX_AUDIENCE_CHARS), "stage": 3, "percent": True}},
            Evidence(audience=Ring(rollout="x" * MAX_AUDIENCE_CHARS)),
        ),
    ],
)  # fmt: skip
def test_each_part_is_read_on_its_own(given: object, expected: Evidence) -> None:
    assert Evidence.read(given) == expected


@pytest.mark.parametrize(
    ("ring", "text"),
    [
        (Ring(stage='segment("staff")', percent=100.0), 'segment("staff") 100%'),
        (Ring(rollout='country == "TH"', stage='country == "TH"', percent=25.0),
         'country == "TH" 25% within country == "TH"'),
        (Ring(rollout="plan == \"pro\"", stage="everyone", percent=5.0),
         'everyone 5% within plan == "pro"'),
        (Ring(), "everyone"),
    ],
)  # fmt: skip
def test_a_ring_in_words(ring: Ring, text: str) -> None:
    assert ring.text() == text


def test_a_hostile_number_of_guardrails_is_cut() -> None:
    read = Evidence.read({"guardrails": {f"m{i}": {"delta": 1} for i in range(10 * MAX_NAMED)}})
    assert read.guardrails is not None
    assert list(read.guardrails) == [f"m{i}" for i in range(MAX_NAMED)]


@pytest.mark.parametrize(
    ("position", "label"),
    [
        ({"index": 2, "of": 5, "percent": 25.0}, "stage 3/5 (25%)"),
        ({"index": 2}, "stage 3"),
        ({"index": True, "of": 5}, None),
        ({"index": 2, "of": 5, "percent": "inf"}, "stage 3/5"),
    ],
)
def test_a_position_is_named_as_every_text_names_it(
    position: dict[str, object], label: str | None
) -> None:
    read = Evidence.read({"at_stage": position}).at_stage
    assert read is not None
    assert read.label() == label


@pytest.mark.parametrize(
    ("metric", "counts", "rate"),
    [
        ("error_rate", ArmTally(errors=5, requests=100), 0.05),
        ("conversion_rate", ArmTally(conversions=3, exposures=30), 0.1),
        ("error_rate", ArmTally(errors=5, requests=0), None),
        ("error_rate", ArmTally(requests=100), None),
        ("latency_p95", ArmTally(errors=5, requests=100), None),
    ],
)
def test_an_arms_rate(metric: str, counts: ArmTally, rate: float | None) -> None:
    assert counts.rate(metric) == rate


def test_where_a_decision_was_taken_and_where_it_left_the_rollout() -> None:
    base = {"v": 1, "id": "d", "ts": 0, "type": "decision", "flag": "f", "kind": "gate"}
    base |= {"action": "advance", "outcome": "applied", "stage": 2}
    at = {"index": 1, "of": 5, "percent": 5.0}
    assert where_decided(Decision.model_validate(base)) == "at stage 3"
    moved = decision_or_alert(base | {"evidence": {"at_stage": at}})
    assert isinstance(moved, Decision)
    assert where_decided(moved) == "at stage 2/5 (5%) (now stage 3/5)"
    odd = decision_or_alert(base | {"evidence": {"at_stage": "x"}})
    assert isinstance(odd, Decision)
    assert where_decided(odd) == "at stage 3"


MISSING = HoldoutCheck(holdout="q4", missing=True, text="no held-out units against 100 expected")
SEEN = HoldoutCheck(holdout="q4", missing=False, text="98 held-out units against 100 expected")


@pytest.mark.parametrize(
    ("word", "holdout", "said"),
    [
        ("ok", None, "ok"),
        ("ok", SEEN, "ok"),
        ("ok", MISSING, "ok; holdout cohort missing"),
        ("mismatch", MISSING, "mismatch; holdout cohort missing"),
        ("no units yet", MISSING, "no units yet; holdout cohort missing"),
    ],
)
def test_the_ratio_word_adds_a_missing_cohort(
    word: str, holdout: HoldoutCheck | None, said: str
) -> None:
    assert ratio_word(word, holdout) == said


def test_the_holdout_line_names_it() -> None:
    assert holdout_line(MISSING) == "holdout q4: no held-out units against 100 expected"
