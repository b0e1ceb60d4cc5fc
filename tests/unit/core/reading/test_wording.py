"""One wording for stages and the advisor, pinned: every output calls these functions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from controller.core.reading.advisor_text import (
    advice_text,
    advisor_name,
    listed_billions,
    model_billions,
    too_small,
)
from controller.core.reading.wording import (
    decided_at,
    label_of,
    percent_text,
    position_label,
    stage_label,
    stage_position,
)
from controller.core.rollouts.plan import DEFAULT_PLAN
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.wire import AdvisorReply, tolerant

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("index", "stages", "percent", "expected"),
    [
        (2, 5, 25.0, "stage 3/5 (25%)"),
        (0, 5, 1.0, "stage 1/5 (1%)"),
        (0, 3, 0.5, "stage 1/3 (0.5%)"),
        (4, 5, 100.0, "stage 5/5 (100%)"),
        (2, None, 25.0, "stage 3 (25%)"),
        (2, 5, None, "stage 3/5"),
        (2, None, None, "stage 3"),
    ],
)
def test_stage_labels_count_from_one(
    index: int, stages: int | None, percent: float | None, expected: str
) -> None:
    assert stage_label(index, stages, percent) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(25.0, "25%"), (0.5, "0.5%"), (100.0, "100%"), (0.0, "0%")]
)
def test_percents(value: float, expected: str) -> None:
    assert percent_text(value) == expected


@pytest.mark.parametrize(
    ("index", "stages", "percent", "expected"),
    [
        (2, 5, 25.0, "stage 3/5 (25%)"),
        (2, 0, 25.0, "stage 3 (25%)"),
        (2, "5", "25", "stage 3"),
        (True, 5, 25.0, None),
        (-1, 5, 25.0, None),
        (10**6, 5, 25.0, None),
        ("2", 5, 25.0, None),
        (None, None, None, None),
        (2, 5, float("nan"), "stage 3/5"),
        (2, 5, 250.0, "stage 3/5"),
    ],
)
def test_positions_read_from_json_are_checked(
    index: Any, stages: Any, percent: Any, expected: str | None
) -> None:
    assert position_label(index, stages, percent) == expected


def rollout(stage: int, phase: Phase = Phase.RUNNING) -> Rollout:
    return Rollout(
        flag="f",
        rollout_id="r1",
        plan=DEFAULT_PLAN,
        phase=phase,
        stage=stage,
        stage_started_at=NOW,
        salt="s",
        flag_version=1,
        stage_versions={stage: [1]},
        started_at=NOW,
        updated_at=NOW,
    )


def test_a_rolled_back_rollout_is_named_by_its_stage_not_its_serving_percent() -> None:
    position = stage_position(rollout(2, Phase.ROLLED_BACK))
    assert position == {
        "index": 2,
        "number": 3,
        "of": 5,
        "percent": 25.0,
        "label": "stage 3/5 (25%)",
    }


AT = {"index": 2, "number": 3, "of": 5, "percent": 25.0}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"type": "decision", "stage": 3, "evidence": {"at_stage": AT}}, "stage 3/5 (25%)"),
        ({"type": "alert", "details": {"stage": 2, "at_stage": AT}}, "stage 3/5 (25%)"),
        ({"flag": "f", "stage": 2, "stages": 5, "at_stage": AT}, "stage 3/5 (25%)"),
        ({"flag": "f", "stage": 2, "stages": 5}, "stage 3/5"),
        ({"type": "decision", "stage": 2}, "stage 3"),
        ({"type": "decision", "stage": 2, "evidence": {"at_stage": "odd"}}, "stage 3"),
        ({"type": "decision", "stage": None}, None),
        ({"type": "alert", "details": {}}, None),
    ],
)
def test_messages_name_their_stage_one_way(message: dict[str, Any], expected: str | None) -> None:
    assert label_of(message) == expected


@pytest.mark.parametrize(
    ("model", "billions", "small"),
    [
        ("smollm2-135m-instruct", 0.135, True),
        ("qwen2.5:0.5b", 0.5, True),
        ("llama3.1-8b-instruct", 8.0, False),
        ("mistral-7B", 7.0, False),
        ("gpt-4o", None, False),
        ("", None, False),
    ],
)
def test_model_sizes_from_their_names(model: str, billions: float | None, small: bool) -> None:
    assert model_billions(model) == billions
    assert too_small(model) is small


LLAMA_CPP = {"id": "smollm2-135m-instruct", "meta": {"n_params": 134515008}}


@pytest.mark.parametrize(
    ("listing", "model", "billions"),
    [
        ({"data": [LLAMA_CPP]}, "smollm2-135m-instruct", 0.134515008),
        ({"data": [LLAMA_CPP]}, "local", 0.134515008),  # the only model, whatever it is called
        ({"data": [LLAMA_CPP, {"id": "big", "meta": {"n_params": 8e9}}]}, "local", None),
        ({"data": [LLAMA_CPP, {"id": "big", "meta": {"n_params": 8_000_000_000}}]}, "big", 8.0),
        ({"data": [{"id": "qwen2.5:7b", "object": "model"}]}, "qwen2.5:7b", None),  # Ollama's
        ({"data": [{"id": "m", "meta": {"n_params": True}}]}, "m", None),
        ({"data": [{"id": "m", "meta": {"n_params": -5}}]}, "m", None),
        ({"data": [{"id": "m", "meta": "n_params"}]}, "m", None),
        ({"data": []}, "m", None),
        ({"data": "none"}, "m", None),
        ([LLAMA_CPP], "m", None),
    ],
)
def test_model_sizes_from_a_servers_model_list(
    listing: object, model: str, billions: float | None
) -> None:
    assert listed_billions(listing, model) == billions


NOT_QUOTED = "incoherent, rationale not quoted"


@pytest.mark.parametrize(
    ("advice", "expected"),
    [
        (
            {"status": "ok", "action": "advance", "confidence": 0.9,
             "rationale": "Error rate flat at 2.0%.", "latency_ms": 5500.0},
            "advisor says advance (confidence 0.9, 5.5 s); advisor's rationale: Error rate flat"
            " at 2.0%.",
        ),
        (  # the demo's "says advance ...; advisor's rationale: rollback": never quoted again
            {"status": "ok", "action": "advance", "confidence": 0.9, "rationale": "rollback",
             "latency_ms": 5500.0},
            f"advisor says advance (confidence 0.9, 5.5 s); {NOT_QUOTED}: its rationale gives"
            " no reason",
        ),
        (  # as recorded by the controller since: the recorded reason is shown
            {"status": "ok", "action": "advance", "confidence": 0.9, "rationale": "roll back now",
             "latency_ms": 5500.0, "coherent": False, "incoherence": "it says so"},
            f"advisor says advance (confidence 0.9, 5.5 s); {NOT_QUOTED}: it says so",
        ),
        (
            {"status": "ok", "action": "hold", "confidence": 0.4, "rationale": "",
             "latency_ms": 900.0, "model": "llama3.1-8b"},
            f"advisor says hold (confidence 0.4, 0.9 s); {NOT_QUOTED}: its rationale gives no"
            " reason",
        ),
        (
            {"status": "ok", "action": "advance", "confidence": 0.9,
             "rationale": "p99\nflat", "latency_ms": 5500.0, "model": "smollm2-135m-instruct"},
            "advisor (smollm2-135m-instruct, too small for its opinion to carry weight) says"
            " advance (confidence 0.9, 5.5 s); advisor's rationale: p99 flat",
        ),
        (
            {"status": "ok", "action": "advance", "confidence": 0.9, "rationale": "a\nb",
             "latency_ms": 5500.0},
            f"advisor says advance (confidence 0.9, 5.5 s); {NOT_QUOTED}: its rationale is not"
            " about the rollout",
        ),
        (
            {"status": "unavailable", "cause": "timeout", "latency_ms": 30000.0},
            "advisor unavailable after 30.0 s: timeout",
        ),
        (
            {"status": "ok", "action": "advance", "confidence": "high", "latency_ms": "x",
             "coherent": True},
            "advisor says advance (0.0 s)",
        ),
    ],
)  # fmt: skip
def test_advice_is_labelled_as_the_models_words(advice: dict[str, Any], expected: str) -> None:
    assert advice_text(tolerant(AdvisorReply, advice)) == expected


def test_a_large_model_is_just_the_advisor() -> None:
    assert advisor_name("llama3.1-70b") == "advisor"
    assert advisor_name(None) == "advisor"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"stage": 3, "evidence": {"at_stage": AT}}, "at stage 3/5 (25%) (now stage 4/5)"),
        ({"stage": 2, "evidence": {"at_stage": AT}}, "at stage 3/5 (25%)"),
        ({"stage": 2}, "at stage 3"),
        ({"stage": None, "evidence": {}}, ""),
    ],
)
def test_decisions_say_where_they_were_taken(message: dict[str, Any], expected: str) -> None:
    assert decided_at(message) == expected
