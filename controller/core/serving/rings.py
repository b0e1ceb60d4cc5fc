"""A targeted rollout served by Unleash: the controller's strategies, and one digest of them.

A rollout with rings is served by one ``flexibleRollout`` strategy per term
of each ring's audience (:mod:`controller.core.rules.unleash_rules`), all with the
feature's name as ``groupId`` so that a unit has one Unleash bucket in every
ring. :mod:`controller.core.serving.serving` compares what should be served with what
is read back through one digest of all of them (:func:`shape_of`,
:func:`ours_shape`): each strategy's percent, stickiness, constraints, and
anything a person did that the controller never writes (a segment, a
disabled flag, a percent that is no whole number), and the rings written for
the SDK's exposure helper (``rcTargeting``). Any change to any of them,
one deleted or one added to the group, changes the digest: drift.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.core.common import TARGETING_PARAMETER
from controller.core.rules import (
    AudienceRule,
    Constraint,
    HeldSegments,
    Ring,
    RingStrategy,
    Term,
    ring_strategies,
)

Spec = RingStrategy
"""One strategy the controller writes for a ring: its ring, whole percent and constraints."""


@dataclass(frozen=True, slots=True)
class Owned:
    """One of the controller's strategies as read back: its id and its constraints."""

    id: str | None
    constraints: Term


def ring_specs(
    audience: AudienceRule | None, rings: Sequence[Ring], segments: HeldSegments
) -> list[Spec]:
    """The strategies that serve these rings (thresholds are whole percents for Unleash), the
    segments they name written inline: ConfigError naming a segment that cannot be."""
    return ring_strategies(audience, [(r.audience, r.threshold // 1000) for r in rings], segments)


def _entry(
    percent: int | str | None, stickiness: str | None, rules: Term, segments: int, disabled: bool
) -> list[Any]:
    return [percent, stickiness, [c.to_json() for c in rules], segments, disabled]


def _digest(entries: list[list[Any]]) -> tuple[str, tuple[str, ...]]:
    """The digest of all the strategies, and each one's (sorted)."""
    texts = sorted(json.dumps(e, sort_keys=True, ensure_ascii=False) for e in entries)
    parts = tuple(hashlib.sha256(t.encode()).hexdigest()[:16] for t in texts)
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:32], parts


def shape_of(specs: Sequence[Spec], stickiness: str, targeting: str) -> tuple[str, tuple[str, ...]]:
    """The digest of the strategies the controller writes, and each one's; the rings written
    for the SDK helper (``rcTargeting``, on one of them) count as one more part."""
    entries = [_entry(s.percent, stickiness, s.constraints, 0, False) for s in specs]
    return _digest([*entries, ["targeting", [_text_digest(targeting)]]])


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ours_shape(
    found: Sequence[tuple[str | None, Mapping[str, str], Term, int, bool]],
) -> tuple[str, tuple[str, ...], tuple[Owned, ...]]:
    """The digest of the strategies read back (id, parameters, constraints, segments,
    disabled), comparable with :func:`shape_of`, and each one's id and constraints."""
    entries: list[list[Any]] = []
    targeting = {p[TARGETING_PARAMETER] for _, p, _, _, _ in found if TARGETING_PARAMETER in p}
    entries.append(["targeting", sorted(_text_digest(t) for t in targeting)])
    for _, parameters, rules, segments, disabled in found:
        text = parameters.get("rollout")
        percent: int | str | None = text[:20] if text is not None else None
        if text is not None and text.isascii() and text.isdigit() and len(text) <= 3:
            percent = int(text)
        stickiness = parameters.get("stickiness")
        entries.append(
            _entry(percent, stickiness[:200] if stickiness else None, rules, segments, disabled)
        )
    shape, parts = _digest(entries)
    return shape, parts, tuple(Owned(id_, rules) for id_, _, rules, _, _ in found)


def constraint_of(doc: Any) -> Constraint:
    """A constraint as Unleash's admin API answers it; one the controller never writes reads
    as such (its operator marked), so that it changes the digest rather than passing."""
    if not isinstance(doc, dict):
        return Constraint("", "?")
    name, operator = doc.get("contextName"), doc.get("operator")
    values, value = doc.get("values"), doc.get("value")
    if not (isinstance(name, str) and isinstance(operator, str)):
        return Constraint("", "?")
    if doc.get("caseInsensitive") is True:
        operator += "?caseInsensitive"
    listed = (
        tuple(v[:300] for v in values[:1000] if isinstance(v, str))
        if isinstance(values, list)
        else ()
    )
    single = value[:300] if isinstance(value, str) and value else None
    return Constraint(
        name[:100], operator[:60], () if single else listed, single, doc.get("inverted") is True
    )
