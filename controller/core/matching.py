"""Evaluate an audience rule against a context: compiled once into closures, never raising.

Evaluation is three-valued (Kleene's logic, as SQL treats NULL). A condition
is *unknown* when its attribute is missing or ``null``, has the wrong type
for the operator's value (a number against a string, ``"42"`` against ``42``,
a boolean against a number), does not parse (``semver``, ``date``), or names
a segment the lookup does not know. Then:

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
:mod:`controller.core.rule_values` defines semantic versions and instants.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.core.audience import (
    AllOf,
    AnyOf,
    AudienceRule,
    Condition,
    Instant,
    Node,
    NotRule,
    Segment,
    Semver,
)
from controller.core.rule_values import instant_ns, semver_key

Truth = bool | None
"""True, false or unknown (``None``)."""


class SegmentLookup(Protocol):
    """Who is in a named segment; ``None`` when the segment is not known here."""

    def member(self, segment: str, value: str) -> bool | None: ...


@dataclass(frozen=True, slots=True)
class IdSegments:
    """Segments as sets of ids: membership costs one hash lookup."""

    sets: Mapping[str, Collection[str]] = field(default_factory=dict)

    def member(self, segment: str, value: str) -> bool | None:
        ids = self.sets.get(segment)
        return None if ids is None else value in ids


NO_SEGMENTS = IdSegments()
Context = Mapping[str, object]
Check = Callable[[Context, SegmentLookup], Truth]

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
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


# Each kind of condition has its own closure, with the test (a C function from
# ``operator`` or ``str``) chosen at compile time: one Python call per condition.

_TEXT_TESTS: dict[str, Callable[[str, str], bool]] = {
    **_COMPARE,
    "starts_with": str.startswith,
    "ends_with": str.endswith,
    "contains": operator.contains,
}


def _condition(node: Condition) -> Check:
    name, op, value = node.attribute, node.op, node.value
    if isinstance(value, Segment):
        return _segment(name, value.segment, negate=op == "not in")
    if isinstance(value, list):
        return _listed(name, value, negate=op == "not in")
    if isinstance(value, Semver | Instant):
        parse = semver_key if isinstance(value, Semver) else instant_ns
        literal = value.semver if isinstance(value, Semver) else value.date
        return _parsed(name, parse, _COMPARE[op], parse(literal))
    if isinstance(value, bool):
        return _boolean(name, _COMPARE[op], value)
    if isinstance(value, int | float):
        return _number(name, _COMPARE[op], float(value))
    return _text(name, _TEXT_TESTS[op], value)


def _text(name: str, test: Callable[[str, str], bool], literal: str) -> Check:
    def check(context: Context, segments: SegmentLookup) -> Truth:
        actual = context.get(name)
        return test(actual, literal) if isinstance(actual, str) else None

    return check


def _boolean(name: str, test: Callable[[bool, bool], bool], literal: bool) -> Check:
    def check(context: Context, segments: SegmentLookup) -> Truth:
        actual = context.get(name)
        return test(actual, literal) if type(actual) is bool else None

    return check


def _number(name: str, test: Callable[[float, float], bool], literal: float) -> Check:
    def check(context: Context, segments: SegmentLookup) -> Truth:
        actual = as_number(context.get(name))
        return None if actual is None else test(actual, literal)

    return check


def _parsed(
    name: str, parse: Callable[[str], Any], test: Callable[[Any, Any], bool], literal: object
) -> Check:
    """A semver or date condition; parsed values are remembered, parsing costs the most."""
    memo: dict[str, object] = {}

    def check(context: Context, segments: SegmentLookup) -> Truth:
        actual = context.get(name)
        if not isinstance(actual, str):
            return None
        parsed = memo.get(actual, _MISS)
        if parsed is _MISS:
            if len(memo) >= MEMO_SIZE:
                memo.clear()  # simpler than LRU, and bounded
            parsed = memo[actual] = parse(actual)
        return None if parsed is None else test(parsed, literal)

    return check


def _listed(name: str, values: list[str] | list[int | float], *, negate: bool) -> Check:
    if isinstance(values[0], str):
        texts = frozenset(values)

        def check_text(context: Context, segments: SegmentLookup) -> Truth:
            actual = context.get(name)
            return (actual in texts) is not negate if isinstance(actual, str) else None

        return check_text
    numbers = frozenset(float(v) for v in values)

    def check_number(context: Context, segments: SegmentLookup) -> Truth:
        actual = as_number(context.get(name))
        return None if actual is None else (actual in numbers) is not negate

    return check_number


def _segment(name: str, segment: str, *, negate: bool) -> Check:
    def check(context: Context, segments: SegmentLookup) -> Truth:
        actual = context.get(name)
        if not isinstance(actual, str):
            return None
        member = segments.member(segment, actual)
        return None if member is None else member is not negate

    return check


def _all(parts: tuple[Check, ...]) -> Check:
    def check(context: Context, segments: SegmentLookup) -> Truth:
        unknown = False
        for part in parts:
            truth = part(context, segments)
            if truth is False:
                return False
            if truth is None:
                unknown = True
        return None if unknown else True

    return check


def _any(parts: tuple[Check, ...]) -> Check:
    def check(context: Context, segments: SegmentLookup) -> Truth:
        unknown = False
        for part in parts:
            truth = part(context, segments)
            if truth is True:
                return True
            if truth is None:
                unknown = True
        return None if unknown else False

    return check


def _not(part: Check) -> Check:
    def check(context: Context, segments: SegmentLookup) -> Truth:
        truth = part(context, segments)
        return None if truth is None else not truth

    return check


def compile_node(node: Node) -> Check:
    """A function of (context, segments) giving the node's truth."""
    if isinstance(node, AllOf):
        return _all(tuple(compile_node(child) for child in node.all_of))
    if isinstance(node, AnyOf):
        return _any(tuple(compile_node(child) for child in node.any_of))
    if isinstance(node, NotRule):
        return _not(compile_node(node.negated))
    return _condition(node)


@dataclass(frozen=True, slots=True)
class Audience:
    """A validated rule, compiled: ask it whether a context is in the audience."""

    rule: AudienceRule
    check: Check

    @classmethod
    def of(cls, rule: AudienceRule) -> Audience:
        return cls(rule, compile_node(rule.root))

    def truth(self, context: Context, segments: SegmentLookup = NO_SEGMENTS) -> Truth:
        """True, false or unknown; a context that breaks evaluation is unknown."""
        try:
            return self.check(context, segments)
        except Exception:  # a hostile context or lookup must not reach the app
            return None

    def matches(self, context: Context, segments: SegmentLookup = NO_SEGMENTS) -> bool:
        """Whether the context is in the audience: only a true rule matches."""
        try:  # truth() inlined: this is on every flag evaluation
            return self.check(context, segments) is True
        except Exception:  # a hostile context or lookup must not reach the app
            return False
