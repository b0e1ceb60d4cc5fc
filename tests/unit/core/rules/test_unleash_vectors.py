"""Conformance: the audience and ring vectors, served by the real Unleash Python SDK.

Every vector whose rules the Unleash backend can write (``core.unleash_rules``)
is bootstrapped into one real ``UnleashClient`` (offline: its features come from
a dict, as from the server's ``/api/client/features``) as the strategies the
controller writes, and the client must give the vector's answer. Unleash's
context is text (the SDK sends every value as a string), so a vector counts
only where the attributes the rule reads are missing or of the rule's type:
strings for string conditions, numbers for numbers, strings for versions and
dates (docs/architecture.md, "Rings served by Unleash"). The rest are counted
by reason and their share is bounded, so the subset cannot silently shrink.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import mmh3
import pytest
from UnleashClient.cache import FileCache
from UnleashClient.clients.unleash_client import UnleashClient

from controller.core.common.errors import ConfigError
from controller.core.rules.audience import (
    AudienceRule,
    Condition,
    Instant,
    Segment,
    Semver,
    conditions,
)
from controller.core.rules.held_segments import NO_HELD_SEGMENTS, HeldSegments
from controller.core.rules.matching import Audience
from controller.core.rules.targeting import Ring
from controller.core.rules.unleash_rules import ring_strategies, rule_terms
from tests.vectors import audience_generate, rings_generate

pytestmark = pytest.mark.filterwarnings("ignore")


def _typed(condition: Condition, value: object) -> bool:
    """Whether Unleash reads ``value`` as the rule does: the rule's type, or missing."""
    wanted = condition.value
    if isinstance(wanted, Segment):  # the rule segment's own conditions are read apart
        return isinstance(value, str)
    if isinstance(wanted, list):
        wanted = wanted[0]
    if isinstance(wanted, bool):
        return isinstance(value, bool)
    if isinstance(wanted, Instant):
        return isinstance(value, str) and _rfc3339(value)
    if isinstance(wanted, Semver):
        return isinstance(value, str) and _u64_parts(value)
    if isinstance(wanted, str):
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _rfc3339(text: str) -> bool:
    """A date-time with a ``T`` and an offset: what Unleash's date operators read."""
    return len(text) > 19 and text[10:11] == "T" and (text.endswith("Z") or text[-6] in "+-")


def _u64_parts(text: str) -> bool:
    """Version parts within 2^64 - 1: Unleash's parser refuses larger ones."""
    core = text.split("+", 1)[0].split("-", 1)[0].split(".")
    return all(not p.isdigit() or int(p) < 2**64 for p in core)


def _readable(
    rules: list[AudienceRule | None], context: dict[str, Any], segments: HeldSegments
) -> bool:
    read = [c for rule in rules if rule is not None for c in conditions(rule.root)]
    for c in list(read):
        if isinstance(c.value, Segment) and c.value.segment in segments.rules:
            read += conditions(segments.rules[c.value.segment].rule.root)
    return all(c.attribute not in context or _typed(c, context[c.attribute]) for c in read)


def _strategy(percent: int, term: tuple[Any, ...], group: str) -> dict[str, Any]:
    return {
        "name": "flexibleRollout",
        "parameters": {"rollout": str(percent), "stickiness": "default", "groupId": group},
        "constraints": [c.to_json() for c in term],
    }


@cache
def _client_with(features_json: str, name: str = "audience") -> UnleashClient:
    cache_ = FileCache(name, directory=tempfile.mkdtemp())
    cache_.bootstrap_from_dict(json.loads(features_json))
    return UnleashClient(
        "http://127.0.0.1:9/api",
        "vectors",
        cache=cache_,
        disable_metrics=True,
        disable_registration=True,
    )


def held_segments(path: Path) -> HeldSegments:
    """The vectors' segments as the sync holds them: id lists and rule segments."""
    held = NO_HELD_SEGMENTS
    named = json.loads(path.read_text(encoding="utf-8")).get("segments", {})
    for number, (name, contents) in enumerate(sorted(named.items()), 1):
        if isinstance(contents, list):
            held = held.with_segment(name, number, ids=frozenset(contents), rule=None)
        else:
            rule = AudienceRule.model_validate(contents["rule"])
            held = held.with_segment(name, number, ids=None, rule=rule)
    return held


def _audience_cases() -> Iterator[tuple[str, Any, dict[str, Any], bool | None]]:
    """(feature, strategies or the refusal, context, expected match or None to skip)."""
    data = json.loads(audience_generate.PATH.read_text(encoding="utf-8"))
    segments = held_segments(audience_generate.PATH)
    for i, vector in enumerate(data["vectors"]):
        rule = AudienceRule.model_validate(vector["rule"])
        try:
            terms = rule_terms(rule, segments)
        except ConfigError as exc:
            yield f"a{i}", exc, vector["context"], None
            continue
        strategies = [_strategy(100, term, f"a{i}") for term in terms]
        yield f"a{i}", strategies, vector["context"], vector["match"]


def test_every_translatable_audience_vector_matches_in_unleash() -> None:
    data = json.loads(audience_generate.PATH.read_text(encoding="utf-8"))
    cases = list(_audience_cases())
    segments = held_segments(audience_generate.PATH)
    features = [
        {"name": name, "enabled": True, "strategies": strategies}
        for name, strategies, _, _ in cases
        if not isinstance(strategies, ConfigError)
    ]
    client = _client_with(json.dumps({"version": 2, "features": features}))
    counts: Counter[str] = Counter()
    wrong: list[str] = []
    for (name, strategies, context, match), vector in zip(cases, data["vectors"], strict=True):
        if isinstance(strategies, ConfigError):
            counts["refused"] += 1
            continue
        rule = AudienceRule.model_validate(vector["rule"])
        if not _readable([rule], context, segments):
            counts["context not in the rule's types"] += 1
            continue
        counts["compared"] += 1
        if client.is_enabled(name, dict(context)) is not match:
            wrong.append(f"{vector['text']} on {context}: expected {match}")
    client.destroy()
    assert not wrong, f"{len(wrong)} differ:\n" + "\n".join(wrong[:40])
    assert counts["compared"] >= 300, counts
    print(dict(counts))


def unleash_bucket(group: str, unit: str) -> int:
    """Unleash's documented ``flexibleRollout`` bucket: 1..100, served iff at most the rollout."""
    return mmh3.hash(f"{group}:{unit}".encode(), seed=0, signed=False) % 100 + 1


def _unleash_arm(vector: dict[str, Any], group: str, segments: HeldSegments) -> bool:
    """Our rules, Unleash's bucketing: in the audience and, for some ring, in it and its share."""
    context = vector["context"]
    audience = vector["audience"]
    if audience is not None and not Audience.of(AudienceRule.model_validate(audience)).matches(
        context, segments
    ):
        return False
    bucket = unleash_bucket(group, vector["unit"])
    for ring in vector["rings"]:
        rule = ring["audience"]
        inside = rule is None or Audience.of(AudienceRule.model_validate(rule)).matches(
            context, segments
        )
        if inside and bucket <= ring["threshold"] // 1000:
            return True
    return False


def test_every_translatable_ring_vector_serves_the_same_arm_in_unleash() -> None:
    """The same audiences; a unit's share by Unleash's bucket, one ``groupId`` in every ring."""
    data = json.loads(rings_generate.PATH.read_text(encoding="utf-8"))
    segments = held_segments(rings_generate.PATH)
    features: list[dict[str, Any]] = []
    expected: list[tuple[str, dict[str, Any], bool]] = []
    counts: Counter[str] = Counter()
    for i, vector in enumerate(data["vectors"]):
        rings = [Ring.model_validate(r) for r in vector["rings"]]
        if any(r.threshold % 1000 for r in rings):
            counts["a share Unleash cannot serve"] += 1
            continue
        audience = (
            None if vector["audience"] is None else AudienceRule.model_validate(vector["audience"])
        )
        try:
            shares = [(r.audience, r.threshold // 1000) for r in rings]
            planned = ring_strategies(audience, shares, segments)
        except ConfigError:
            counts["refused"] += 1
            continue
        rules = [audience, *(r.audience for r in rings)]
        if not _readable(rules, vector["context"], segments):
            counts["context not in the rule's types"] += 1
            continue
        group = f"r{i}"
        strategies = [_strategy(s.percent, s.constraints, group) for s in planned]
        features.append({"name": group, "enabled": True, "strategies": strategies})
        context = {**vector["context"], "userId": vector["unit"]}
        want = _unleash_arm(vector, group, segments)
        if all(r.threshold in (0, 100_000) for r in rings):  # then the very arm of the vector
            assert want is (vector["arm"] == "treatment"), vector
            counts["whole rings"] += 1
        expected.append((group, context, want))
    client = _client_with(json.dumps({"version": 2, "features": features}), "rings")
    wrong = [
        f"{name} {context}"
        for name, context, arm in expected
        if client.is_enabled(name, context) is not arm
    ]
    client.destroy()
    assert not wrong, f"{len(wrong)} differ: {wrong[:20]}"
    assert len(expected) >= 100, counts
    print(len(expected), dict(counts))
