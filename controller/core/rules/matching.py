"""Evaluate an audience rule against a context: compiled once, never raising.

Evaluation is three-valued (Kleene's logic, as SQL treats NULL). A condition
is *unknown* when its attribute is missing or ``null``, has the wrong type
for the operator's value (a number against a string, ``"42"`` against ``42``,
a boolean against a number), does not parse (``semver``, ``date``), or names
a segment the lookup does not know. ``X in segment("name")`` asks the lookup
whether ``X``'s value (a string) is in the id list ``name``; when ``name`` is a
rule segment instead, it is the truth of that segment's rule against the whole
context (``X`` must still be a string). A segment's rule names no segment, so
this nests once. Then:

* ``not unknown`` is unknown;
* ``and`` is false if any part is false, else unknown if any part is, else true;
* ``or`` is true if any part is true, else unknown if any part is, else false;
* a rule **matches only when it is true**: unknown serves the rule's "no".

So ``country != "TH"`` and ``not (country == "TH")`` do not match a context
without ``country``, and ``plan == "pro" or country == "TH"`` still matches
a pro user whose country is missing. The result does not depend on the order
of the parts, so short-circuiting is safe in any language.

Values are compared exactly as they are: strings by code points, case
sensitive, without Unicode normalisation (like unit ids in bucketing);
numbers as IEEE-754 binary64, so an integer context value is converted to
binary64 first, as JSON parsers in other languages do (one beyond its range
is infinite; NaN is unknown); booleans only equal booleans.
:mod:`controller.core.rules.values` defines semantic versions and instants,
and :mod:`controller.core.rules.codegen` compiles a rule into one function.
:func:`rule_context` is what rules read of a flag evaluation's context.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

from controller.core.rules.audience import AudienceRule
from controller.core.rules.codegen import Generated, generate

TARGETING_KEY = "targetingKey"
"""The attribute a rule names the unit by: the evaluation context's targeting key."""

Truth = bool | None
"""True, false or unknown (``None``)."""


class SegmentLookup(Protocol):
    """Who is in a named segment; ``None`` when the segment is not known here."""

    def member(self, segment: str, value: str) -> bool | None:
        """Whether ``value`` is in the id-list segment; None if no such list is held."""
        ...

    def matches(self, segment: str, context: Context) -> bool | None:
        """Whether ``context`` is in the rule segment; None if no such rule is held."""
        ...


@dataclass(frozen=True, slots=True)
class IdSegments:
    """Segments as sets of ids: membership costs one hash lookup."""

    sets: Mapping[str, Collection[str]] = field(default_factory=dict)

    def member(self, segment: str, value: str) -> bool | None:
        ids = self.sets.get(segment)
        return None if ids is None else value in ids

    def matches(self, segment: str, context: Context) -> bool | None:
        return None  # no rule segments here


Context = Mapping[str, object]
NO_SEGMENTS = IdSegments()
MEMO_SIZE = 4096
"""Parsed semver and date values remembered per condition: an app sees few distinct ones."""
_MISS = object()


def as_number(value: object) -> float | None:
    """A context value as binary64, or ``None`` if it is no number (booleans are not)."""
    kind = type(value)
    if kind is float:
        number = value
    elif kind is int:
        try:
            number = float(value)  # type: ignore[arg-type]
        except OverflowError:  # as a JSON parser reads 1e400 (and JavaScript any such integer)
            number = math.inf if value > 0 else -math.inf  # type: ignore[operator]
    else:
        return None
    # NaN is the one value unequal to itself (and this is faster than math.isnan).
    return number if number == number else None  # type: ignore[return-value]  # noqa: PLR0124


def remembered(parse: Callable[[str], Any]) -> Callable[[object], object]:
    """``parse`` of string values (``None`` for others), remembered: parsing costs the most."""
    memo: dict[str, object] = {}

    def read(value: object) -> object:
        if not isinstance(value, str):
            return None
        parsed = memo.get(value, _MISS)
        if parsed is _MISS:
            if len(memo) >= MEMO_SIZE:
                memo.clear()  # simpler than LRU, and bounded
            parsed = memo[value] = parse(value)
        return parsed

    return read


@dataclass(frozen=True, slots=True)
class Audience:
    """A validated rule, compiled: ask it whether a context is in the audience."""

    rule: AudienceRule
    check: Generated
    source: str
    """The generated function's text, for reading when something looks wrong."""

    @classmethod
    def of(cls, rule: AudienceRule) -> Audience:
        source, check = generate(rule.root, number=as_number, remembered=remembered)
        return cls(rule, check, source)

    def truth(self, context: Context, segments: SegmentLookup = NO_SEGMENTS) -> Truth:
        """True, false or unknown; a context that breaks evaluation is unknown."""
        try:
            return self.check(context.get, segments.member, segments.matches, context)
        except Exception:  # a hostile context or lookup must not reach the app
            return None

    def matches(self, context: Context, segments: SegmentLookup = NO_SEGMENTS) -> bool:
        """Whether the context is in the audience: only a true rule matches."""
        try:  # truth() inlined: this is on every flag evaluation
            return self.check(context.get, segments.member, segments.matches, context) is True
        except Exception:  # a hostile context or lookup must not reach the app
            return False


def rule_context(unit: str | None, attributes: Mapping[str, object]) -> dict[str, object]:
    """What rules read of an evaluation context: its attributes, the targeting key as
    :data:`TARGETING_KEY` (OpenFeature's name for it, so a rule can name the unit), and
    each date or date-time as the text of the instant rules compare (``date(...)``):
    a ``datetime`` with a zone at its instant, one without in UTC, as rules read text
    without an offset."""
    context = dict(attributes)
    for name, value in attributes.items():
        if isinstance(value, date):
            context[name] = instant_text(value)
    # The unit, whatever the attributes say; with none, no rule reads a key
    if unit is None:
        context.pop(TARGETING_KEY, None)
    else:
        context[TARGETING_KEY] = unit
    return context


def instant_text(value: date) -> object:
    """A date as ``YYYY-MM-DD``, a date-time as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` (in UTC);
    the value itself when it has no such text (moved past year 9999 or before year 1)."""
    if not isinstance(value, datetime):
        return value.isoformat()
    try:
        utc = value.astimezone(UTC) if value.utcoffset() is not None else value
    except OverflowError:
        return value
    return utc.replace(tzinfo=None).isoformat() + "Z"
