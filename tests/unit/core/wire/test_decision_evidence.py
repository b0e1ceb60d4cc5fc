"""A decision's evidence: closed and documented where published, tolerant where read back."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from pydantic import ValidationError

from controller.core.wire import (
    AppKeyEvidence,
    Decision,
    GateEvidence,
    GuardrailTest,
    PipelineEvidence,
    RolloutEvidence,
    StagePosition,
    TruncatedEvidence,
    decision_or_alert,
    read_evidence,
)

SCHEMAS = Path(__file__).parents[4] / "schemas"
BASE = {"v": 1, "id": "d1", "ts": 0, "type": "decision", "flag": "checkout", "outcome": "applied"}
AT = {"index": 1, "number": 2, "of": 3, "percent": 50.0, "label": "stage 2/3 (50%)"}
NOTE = {"truncated": True, "bytes": 70_000, "sha256": "ab" * 32, "keys": ["arms", "sources"]}


def _objects(schema: Any) -> list[dict[str, Any]]:
    """Every object schema with properties inside ``schema``."""
    found = []
    if isinstance(schema, dict):
        if "properties" in schema:
            found.append(schema)
        for value in schema.values():
            found += _objects(value)
    elif isinstance(schema, list):
        for value in schema:
            found += _objects(value)
    return found


@pytest.mark.parametrize(
    ("stem", "where"),
    [
        ("decision", ("properties", "evidence")),
        ("http-rollout", ("properties", "evidence")),
    ],
)
def test_the_published_evidence_is_closed_and_every_property_described(
    stem: str, where: tuple[str, ...]
) -> None:
    schema = orjson.loads((SCHEMAS / f"{stem}.schema.json").read_bytes())
    evidence = schema
    for key in where:
        evidence = evidence[key]
    refs = {r.rsplit("/", 1)[1] for r in _refs(evidence)}
    parts = {name: schema["$defs"][name] for name in _closure(schema["$defs"], refs)}
    assert "RolloutEvidence" in parts
    for name, part in parts.items():
        if part.get("type") != "object" or "properties" not in part:
            continue
        assert part["additionalProperties"] is False, name
        undescribed = [p for p, s in part["properties"].items() if "description" not in s]
        assert not undescribed, (name, undescribed)


def _refs(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        own = [schema["$ref"]] if "$ref" in schema else []
        return own + [r for v in schema.values() for r in _refs(v)]
    if isinstance(schema, list):
        return [r for v in schema for r in _refs(v)]
    return []


def _closure(defs: dict[str, Any], names: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen or name == "JsonValue":
            continue
        seen.add(name)
        todo += [r.rsplit("/", 1)[1] for r in _refs(defs[name])]
    return seen


@pytest.mark.parametrize(
    ("kind", "evidence", "valid"),
    [
        ("gate", {"breach": "error_rate", "at_stage": AT}, True),
        ("gate", NOTE, True),  # evidence too large: its note
        (
            "pipeline",
            {"window": "inside allow window windows.0", "key": "r/production/start"},
            True,
        ),
        ("gate", {"breach": "x", "surprise": 1}, False),  # closed
        ("gate", {"at_stage": {**AT, "colour": "red"}}, False),  # closed, part by part
        ("gate", {**NOTE, "truncated": False}, False),  # the note says true or is none
    ],
)
def test_the_schema_and_the_model_agree_on_what_a_decision_may_carry(
    kind: str, evidence: dict[str, Any], valid: bool
) -> None:
    schema = orjson.loads((SCHEMAS / "decision.schema.json").read_bytes())
    message = {**BASE, "kind": kind, "action": "advance", "evidence": evidence}
    by_schema = jsonschema.Draft202012Validator(schema).is_valid(message)
    try:
        Decision.model_validate(message)
        by_model = True
    except ValidationError:
        by_model = False
    assert (by_schema, by_model) == (valid, valid)


@pytest.mark.parametrize(
    ("kind", "evidence", "part"),
    [
        ("gate", {"at_stage": AT}, RolloutEvidence),
        ("command", {"actor": "ana"}, RolloutEvidence),
        ("pipeline", {"window": "outside every allow window"}, PipelineEvidence),
        ("app_key", {"actor": "ana", "reason": ""}, AppKeyEvidence),
        ("gate", NOTE, TruncatedEvidence),
        ("made_up", {}, RolloutEvidence),
    ],
)
def test_the_kind_is_the_tag(kind: str, evidence: dict[str, Any], part: type) -> None:
    assert type(read_evidence(kind, evidence)) is part


def test_a_decision_read_back_keeps_what_fits_and_leaves_out_the_rest() -> None:
    stored = {
        "at_stage": {**AT, "label": 7},  # a damaged field of a part
        "window": "a string where an object belongs",  # a part of the wrong shape
        "from_a_newer_controller": {"x": 1},  # a key this one does not know
        "actor": "ana",
    }
    read = decision_or_alert({**BASE, "kind": "command", "action": "pause", "evidence": stored})
    assert isinstance(read, Decision)
    evidence = read.evidence
    assert isinstance(evidence, RolloutEvidence)
    assert evidence.actor == "ana"
    assert evidence.window is None
    assert isinstance(evidence.at_stage, StagePosition)
    assert (evidence.at_stage.index, evidence.at_stage.label) == (1, None)
    assert list(evidence.wire()) == ["at_stage", "actor"]


@pytest.mark.parametrize("evidence", [None, "text", [1, 2], 5])
def test_evidence_that_is_no_object_reads_as_empty_never_costing_the_decision(
    evidence: object,
) -> None:
    read = decision_or_alert({**BASE, "kind": "gate", "action": "hold", "evidence": evidence})
    assert isinstance(read, Decision)
    assert read.evidence.wire() == {}


@pytest.mark.parametrize(
    ("given", "added", "written"),
    [
        ({"actor": "ana"}, {"key_id": "k"}, ["actor", "key_id"]),
        ({"key_id": "k", "actor": "ana"}, {"at_stage": AT}, ["key_id", "actor", "at_stage"]),
        ({"actor": "ana", "key_id": "k"}, {"actor": "bo"}, ["actor", "key_id"]),  # kept in place
        ({}, {"key_id": None}, ["key_id"]),  # an explicit null is written
    ],
)
def test_merged_adds_keys_as_a_spread_does(
    given: dict[str, Any], added: dict[str, Any], written: list[str]
) -> None:
    merged = RolloutEvidence.model_validate(given).merged(**added)
    assert list(merged.wire()) == written
    assert merged.wire() == {**given, **added}


INFINITE_TEST = {
    "delta": 0.5,
    "variance": "inf",
    "n": 40,
    "half_width": "inf",
    "lower": "-inf",
    "upper": "inf",
    "regressed": False,
    "direction": "lower_is_better",
    "tolerance": 0,
    "alpha": 0.025,
    "n_tune": 5000,
    "p_value": 1.0,
}


@pytest.mark.parametrize("from_json", [False, True])
def test_an_infinite_bound_is_written_as_a_string_and_read_back_as_a_float(
    from_json: bool,
) -> None:
    given = {"guardrails": {"error_rate": INFINITE_TEST}}
    read = (
        GateEvidence.model_validate_json(orjson.dumps(given))
        if from_json
        else GateEvidence.model_validate(given)
    )
    test = (read.guardrails or {})["error_rate"]
    assert isinstance(test, GuardrailTest)
    assert (test.variance, test.lower, test.upper) == (math.inf, -math.inf, math.inf)
    assert type(test.tolerance) is int  # each number keeps its type
    assert type(test.delta) is float
    assert orjson.loads(orjson.dumps(read.wire())) == given
