"""Conformance: the audience rule vectors that clients in any language are held to.

``tests/vectors/audience.json`` must be exactly what
``tests/vectors/audience_generate.py`` makes; every vector's JSON form must
validate, its text form must parse to the same rule, and the controller's
evaluator must give the expected truth. A JavaScript client written from
``docs/clients.md`` must pass every vector too.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from controller.core.rules.audience import AudienceRule
from controller.core.rules.held_segments import HeldSegments
from controller.core.rules.matching import Audience
from controller.core.rules.text import parse
from tests.vectors import audience_generate as generate

ROOT = Path(__file__).resolve().parents[4]


@cache
def _file() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(generate.PATH.read_text(encoding="utf-8"))
    return data


def test_the_file_is_what_the_generator_makes() -> None:
    assert generate.PATH.read_text(encoding="utf-8") == generate.render(), (
        "tests/vectors/audience.json drifted: run python tests/vectors/audience_generate.py"
    )
    assert generate.main(["audience_generate.py", "--check"]) == 0


def _lookup(table: dict[str, Any]) -> HeldSegments:
    """The file's segment table as the store an SDK holds: id lists and compiled rules."""
    ids = {name: frozenset(held) for name, held in table.items() if isinstance(held, list)}
    rules = {
        name: AudienceRule.model_validate(held["rule"])
        for name, held in table.items()
        if isinstance(held, dict)
    }
    segments = HeldSegments()
    for version, name in enumerate(sorted(table), start=1):
        segments = segments.with_segment(name, version, ids=ids.get(name), rule=rules.get(name))
    return segments


def test_every_vector_comes_out_of_the_controllers_evaluator() -> None:
    segments = _lookup(_file()["segments"])
    mismatches = []
    for v in _file()["vectors"]:
        audience = Audience.of(AudienceRule.model_validate(v["rule"]))
        got = (audience.truth(v["context"], segments), audience.matches(v["context"], segments))
        if got != (v["truth"], v["match"]):
            mismatches.append((v, got))
    assert not mismatches, mismatches[:3]


def test_every_vectors_text_is_its_rule() -> None:
    for v in _file()["vectors"]:
        assert parse(v["text"]) == AudienceRule.model_validate(v["rule"]), v


def test_the_vectors_cover_the_edges() -> None:
    vectors = _file()["vectors"]
    assert len(vectors) >= 1000
    truths = Counter(v["truth"] for v in vectors)
    assert min(truths[True], truths[False], truths[None]) >= 200, truths
    texts = " ".join(v["text"] for v in vectors)
    for needle in ("semver(", "date(", "segment(", " not in ", "starts_with", "ends_with"):
        assert needle in texts, needle
    for needle in (" and ", " or ", "not (", "contains", 'segment("gone")'):
        assert needle in texts, needle
    for name in generate.RULE_SEGMENTS:  # each rule segment's three truths
        named = Counter(v["truth"] for v in vectors if f'segment("{name}")' in v["text"])
        assert min(named[True], named[False], named[None]) >= 5, (name, named)
    contexts = [v["context"] for v in vectors]
    assert any(c.get("name") == "cafe\u0301" for c in contexts)  # the NFD form
    assert any(c.get("country") is None and "country" in c for c in contexts)  # null
    assert any(c.get("age") == "18" for c in contexts)  # a numeric string


def test_the_published_schema_takes_every_vectors_rule_and_refuses_bad_ones() -> None:
    schema = json.loads((ROOT / "schemas" / "audience.schema.json").read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema)
    for v in _file()["vectors"]:
        validator.validate(v["rule"])
    condition = {"attribute": "a", "op": "==", "value": 1}
    for bad in (
        {"and": [condition]},
        {**condition, "attribute": "1a"},
        {**condition, "extra": True},
        {**condition, "value": "x" * 257},
        {**condition, "op": "in", "value": []},
        {"not": condition, "and": [condition, condition]},
    ):
        assert not validator.is_valid(bad), bad
    # One corner the schema cannot draw: 2**53 is a JSON Schema number, but the
    # model refuses integers no binary64 holds exactly.
    assert validator.is_valid({**condition, "value": 2**53})


def test_a_javascript_client_written_from_the_spec_passes_every_vector(node: str) -> None:
    script = generate.PATH.with_name("audience.mjs")
    done = subprocess.run(
        [node, str(script), str(generate.PATH)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert json.loads(done.stdout) == {"checked": len(_file()["vectors"]), "mismatches": []}


@settings(max_examples=200, deadline=None)
@given(st.randoms(use_true_random=False))
def test_the_evaluator_agrees_with_the_reference_on_random_rules(rng: random.Random) -> None:
    segments = _lookup(generate.segment_table())
    text = generate._random_rule(rng, 3)
    audience = Audience.of(parse(text))
    wire = json.loads(audience.rule.to_json())
    for _ in range(5):
        context = generate._random_context(rng)
        assert audience.truth(context, segments) is generate.truth(wire, context), (text, context)
