"""Segments held by a server that evaluates for apps: one immutable snapshot, by version.

:class:`HeldSegments` is the :class:`~controller.core.rules.matching.SegmentLookup`
that the daemon's OFREP evaluations ask, as the SDK's ``SegmentBook`` is an
app's: ``member(name, value)`` is one ``frozenset`` lookup for an id list,
``None`` (unknown) for a segment not held and for a rule segment;
``matches(name, context)`` evaluates a rule segment. A snapshot never
changes; a reload makes a new one (:meth:`HeldSegments.with_segment` reuses
what did not change), and its :attr:`HeldSegments.tag` changes with any
segment's version, so a cached answer can name the segments it was made from.

Pure: no I/O. The daemon reads the versions and the lists from Redis.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from controller.core.rules.audience import AudienceRule
from controller.core.rules.matching import Audience, Context, Truth

MAX_HELD_SEGMENTS = 1000
"""The most segments one snapshot holds; more are left out (unknown), in name order."""


@dataclass(frozen=True, slots=True)
class HeldSegments:
    """Each held segment's version, and its ids or its compiled rule."""

    versions: Mapping[str, int] = field(default_factory=dict)
    ids: Mapping[str, frozenset[str]] = field(default_factory=dict)
    rules: Mapping[str, Audience] = field(default_factory=dict)

    def member(self, segment: str, value: str) -> bool | None:
        """Whether ``value`` is in the id-list segment; None when no such list is held."""
        ids = self.ids.get(segment)
        return None if ids is None else value in ids

    def matches(self, segment: str, context: Context) -> Truth:
        """Whether ``context`` is in the rule segment; None when no such rule is held."""
        audience = self.rules.get(segment)
        return None if audience is None else audience.truth(context)  # names no segment

    @property
    def tag(self) -> bytes:
        """A digest of the segments' names and versions: it changes with any of them."""
        return hashlib.sha256(orjson.dumps(sorted(self.versions.items()))).digest()

    def keeping(self, names: Mapping[str, int]) -> HeldSegments:
        """The segments of ``names`` held at the version named; the others dropped."""
        kept = {n: v for n, v in self.versions.items() if names.get(n) == v}
        return HeldSegments(
            kept,
            {n: ids for n, ids in self.ids.items() if n in kept},
            {n: rule for n, rule in self.rules.items() if n in kept},
        )

    def with_segment(
        self, name: str, version: int, *, ids: frozenset[str] | None, rule: AudienceRule | None
    ) -> HeldSegments:
        """This snapshot with ``name`` at ``version``: an id list, or a rule (compiled here)."""
        versions = {**self.versions, name: version}
        id_sets = {n: s for n, s in self.ids.items() if n != name}
        rules = {n: r for n, r in self.rules.items() if n != name}
        if ids is not None:
            id_sets[name] = ids
        elif rule is not None:
            rules[name] = Audience.of(rule)
        return HeldSegments(versions, id_sets, rules)


NO_HELD_SEGMENTS = HeldSegments()
