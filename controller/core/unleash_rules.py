"""Audience rules as Unleash strategy constraints, exactly or not at all (#26).

Unleash serves a feature to a unit when any enabled strategy matches it, and
a strategy matches when all its constraints do: an ``or`` of ``and`` s of
constraints, each constraint one operator on one context field, possibly
``inverted``. So a rule is rewritten in disjunctive normal form (negations
pushed down to the conditions, ``and`` distributed over ``or``): each term is
one strategy. Kleene's logic keeps De Morgan's laws and distributivity, so
the rewritten rule has the truth of the original for every context, and a
term is true iff each of its literals is.

Each literal becomes constraints that are true exactly when the literal is,
for a context whose attributes have the rule's types (Unleash's context is
text: its SDKs send every value as a string, so ``"42"`` and ``42`` reach it
alike; see docs/architecture.md, "Rings served by Unleash"):

* ``a == "s"`` → ``IN ["s"]``; ``a in [...]`` → ``IN``; ``starts_with``,
  ``ends_with``, ``contains`` → ``STR_STARTS_WITH`` … (case-sensitive).
* Their negations (``!=``, ``not in``, ``not starts_with`` …) are refused:
  Unleash holds an inverted constraint (and ``NOT_IN``) true for a context
  *without* the field, where the rule is unknown and does not match, and it
  takes no empty value, so no string constraint tests that the field is there.
* Numbers: ``NUM_EQ`` / ``NUM_LT`` / ``NUM_LTE`` / ``NUM_GT`` / ``NUM_GTE``;
  a negated order is the opposite order (``not a < 5`` is ``NUM_GTE 5``),
  ``!=`` the inverted ``NUM_EQ`` in two terms, one with ``NUM_GTE`` and one
  with ``NUM_LT`` -(2^53 - 1) (so the field reads as a number: a missing
  attribute never widens);
  ``in`` a list of numbers one term per number.
* Semantic versions: ``SEMVER_EQ`` / ``SEMVER_LT`` / ``SEMVER_GT``; ``<=``
  is ``LT`` or ``EQ`` (two terms), ``!=`` ``LT`` or ``GT``.
* Dates: ``<`` → ``DATE_BEFORE``, ``>`` → ``DATE_AFTER``; ``>=``, ``<=``,
  ``==`` the inverted ones guarded by ``DATE_AFTER`` year 0, ``!=`` two terms.
* Booleans: ``IN ["True", "true"]`` (Python's SDK and the others spell them so).

Segments are written inline, as the sync finds them (:func:`segment_terms`):
``a in segment("beta")`` of an id list is ``IN`` its ids, of a rule segment
that rule's terms (each must test ``a``, as the rule needs it there). Before
any segment is read (a plan's check), a segment stands for one constraint.

Refused, with the condition named: a negated string condition, a negated
boolean, an empty string (the server refuses it), a segment not held, one
whose list is longer than a constraint takes, a date not a whole millisecond, a
version part beyond 2^64 - 1, a number beyond ±(2^53 - 1), an attribute
Unleash fills in itself (``currentTime``, ``environment``, ``appName``, ``properties``), a list
longer than Unleash takes in one constraint, and a rule whose normal form
needs more strategies or constraints than Unleash keeps on one feature.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
    conditions,
)
from controller.core.errors import ConfigError
from controller.core.held_segments import HeldSegments
from controller.core.rule_text import to_text
from controller.core.rule_values import instant_ns

MAX_STRATEGIES = 30
"""Strategies on one feature environment (Unleash's ``featureEnvironmentStrategies`` limit)."""
MAX_CONSTRAINTS = 30
"""Constraints on one strategy (Unleash's ``constraints`` limit)."""
MAX_CONSTRAINT_VALUES = 250
"""Values in one constraint (Unleash's ``constraintValues`` limit)."""
RESERVED_FIELDS = frozenset({"currentTime", "environment", "appName", "properties"})
"""Context fields Unleash's SDKs fill in themselves, so a rule cannot mean the same on them."""
EARLIEST_DATE = "0000-01-01T00:00:00.000Z"
"""Before any instant a rule reads: ``DATE_AFTER`` it is true iff the field reads as a date."""
SAFE_NUMBER = 2**53 - 1
"""Unleash takes a number value only within ``±(2^53 - 1)``."""
PIVOT = str(-SAFE_NUMBER)
"""``NUM_GTE`` it or ``NUM_LT`` it: true iff the field reads as a number (two terms)."""

_ORDER = {"<": "LT", "<=": "LTE", ">": "GT", ">=": "GTE"}
_OPPOSITE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}
_STRINGS = {"starts_with": "STR_STARTS_WITH", "ends_with": "STR_ENDS_WITH"}
_STRINGS["contains"] = "STR_CONTAINS"


@dataclass(frozen=True, slots=True, order=True)
class Constraint:
    """One Unleash constraint: ``values`` for list operators, ``value`` for the others."""

    context: str
    operator: str
    values: tuple[str, ...] = ()
    value: str | None = None
    inverted: bool = False

    def to_json(self) -> dict[str, Any]:
        """The constraint as Unleash's admin API takes it (case-sensitive always)."""
        out: dict[str, Any] = {
            "contextName": self.context,
            "operator": self.operator,
            "inverted": self.inverted,
            "caseInsensitive": False,
        }
        if self.value is not None:
            out["value"] = self.value
        else:
            out["values"] = list(self.values)
        return out


Term = tuple[Constraint, ...]
"""Constraints that must all hold: one strategy."""
EVERYONE: list[Term] = [()]
"""The normal form of no rule: one term with no constraint."""


def _number_present(attribute: str, term: Term) -> list[Term]:
    """``term`` where the field reads as a number: one term at or above the pivot, one below."""
    high, low = (Constraint(attribute, op, value=PIVOT) for op in ("NUM_GTE", "NUM_LT"))
    return [(*term, high), (*term, low)]


def _number(value: int | float) -> str:
    return str(value) if isinstance(value, int) else repr(value)


def _refuse(condition: Condition, why: str) -> ConfigError:
    return ConfigError(f"`{to_text(condition)}`: {why}")


def _strings(cond: Condition, negated: bool, *, in_list: bool = False) -> list[Term]:
    attribute, op, value = cond.attribute, cond.op, cond.value
    if in_list:  # a boolean's spellings
        negated ^= op == "!="
        assert isinstance(value, list)
        values: tuple[str, ...] = tuple(str(v) for v in value)
        operator = "IN"
    elif op in ("==", "!="):
        negated ^= op == "!="
        values = (str(value),)
        operator = "IN"
    elif op in ("in", "not in"):
        negated ^= op == "not in"
        assert isinstance(value, list)
        values = tuple(str(v) for v in value)
        operator = "IN"
    else:
        values, operator = (str(value),), _STRINGS[op]
    if "" in values:
        raise _refuse(cond, "Unleash takes no empty string in a constraint")
    if len(values) > MAX_CONSTRAINT_VALUES:
        raise _refuse(cond, f"Unleash takes at most {MAX_CONSTRAINT_VALUES} values a constraint")
    if negated:
        raise _refuse(
            cond,
            "negated, a string condition would match a context without the attribute in"
            " Unleash (an inverted constraint holds there, and no constraint tests presence)",
        )
    return [(Constraint(attribute, operator, values),)]


def _numbers(cond: Condition, negated: bool) -> list[Term]:
    attribute, value = cond.attribute, cond.value
    op: str = cond.op
    if isinstance(value, list):  # in / not in a list of numbers: one equality each
        numbers = [v for v in value if isinstance(v, (int, float))]
        if (op == "in") != negated:
            return [(Constraint(attribute, "NUM_EQ", value=_number(v)),) for v in numbers]
        unequal = [
            Constraint(attribute, "NUM_EQ", value=_number(v), inverted=True) for v in numbers
        ]
        return _number_present(attribute, tuple(unequal))
    assert isinstance(value, (int, float))
    op = _OPPOSITE[op] if negated else op
    if op in _ORDER:
        return [(Constraint(attribute, f"NUM_{_ORDER[op]}", value=_number(value)),)]
    equal = Constraint(attribute, "NUM_EQ", value=_number(value), inverted=op == "!=")
    return _number_present(attribute, (equal,)) if op == "!=" else [(equal,)]


def _semvers(cond: Condition, negated: bool, version: str) -> list[Term]:
    op = _OPPOSITE[cond.op] if negated else cond.op
    parts = {
        "==": ["EQ"],
        "!=": ["LT", "GT"],
        "<": ["LT"],
        ">": ["GT"],
        "<=": ["LT", "EQ"],
        ">=": ["GT", "EQ"],
    }[op]
    return [(Constraint(cond.attribute, f"SEMVER_{p}", value=version),) for p in parts]


def _dates(cond: Condition, negated: bool, text: str) -> list[Term]:
    op = _OPPOSITE[cond.op] if negated else cond.op
    ns = instant_ns(text)
    if ns is None or ns % 1_000_000:
        raise _refuse(cond, "Unleash reads dates to the millisecond")
    stamp, name = _utc_text(ns), cond.attribute
    before, after = (
        Constraint(name, "DATE_BEFORE", value=stamp),
        Constraint(name, "DATE_AFTER", value=stamp),
    )
    guard = Constraint(name, "DATE_AFTER", value=EARLIEST_DATE)
    if op in ("<", ">"):
        return [(before if op == "<" else after,)]
    if op == "!=":
        return [(before,), (after,)]
    # >=, <=, ==: not after / not before, guarded (an inverted constraint holds without the field)
    not_before = Constraint(name, "DATE_BEFORE", value=stamp, inverted=True)
    not_after = Constraint(name, "DATE_AFTER", value=stamp, inverted=True)
    kept = {">=": (not_before,), "<=": (not_after,), "==": (not_before, not_after)}[op]
    return [(*kept, guard)]


def _version_core(text: str) -> list[str]:
    return text.split("+", 1)[0].split("-", 1)[0].split(".")


def _utc_text(ns: int) -> str:
    """``ns`` since the epoch as RFC 3339 in UTC with milliseconds (no host time zone)."""
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415 - pure arithmetic only

    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def segment_terms(cond: Condition, negated: bool, segments: HeldSegments | None) -> list[Term]:
    """``a in segment(name)`` inline: ``IN`` the list's ids, or the rule segment's terms, each
    testing ``a`` (the condition is unknown without it). ``segments`` None: one stand-in."""
    assert isinstance(cond.value, Segment)
    name, negated = cond.value.segment, negated != (cond.op == "not in")
    if segments is None:  # a plan's check: the contents are read when the sync writes
        return [(Constraint(cond.attribute, "IN", (f"segment:{name}",)),)]
    ids, compiled = segments.ids.get(name), segments.rules.get(name)
    if ids is not None:
        if negated:
            raise _refuse(cond, "negated, it would match a context without the attribute")
        if len(ids) > MAX_CONSTRAINT_VALUES:
            why = f"holds {len(ids)} ids, Unleash takes {MAX_CONSTRAINT_VALUES} a constraint"
            raise _refuse(cond, f"segment {name!r} {why}")
        if not ids:  # no strategy would serve everyone where it was the only one
            raise _refuse(cond, f"segment {name!r} is empty: Unleash takes no empty constraint")
        return [(Constraint(cond.attribute, "IN", tuple(sorted(ids))),)]
    if compiled is None:
        raise _refuse(cond, f"segment {name!r} is not held (there is no such segment)")
    if any(isinstance(c.value, Segment) for c in conditions(compiled.rule.root)):
        raise _refuse(cond, f"segment {name!r} names a segment: segments nest once")
    try:
        terms = normal_form(compiled.rule.root, negated, segments)
    except ConfigError as exc:
        raise _refuse(cond, f"segment {name!r}: {exc}") from None
    for term in terms:  # an inverted constraint holds without the field
        if not any(c.context == cond.attribute and not c.inverted for c in term):
            why = f"'s rule does not test {cond.attribute} (no constraint tests it is there)"
            raise _refuse(cond, f"segment {name!r}{why}")
    return terms


def literal(cond: Condition, negated: bool, segments: HeldSegments | None = None) -> list[Term]:
    """The terms that are true exactly when ``cond`` (or ``not cond``) is; ConfigError if none."""
    if cond.attribute in RESERVED_FIELDS:
        raise _refuse(cond, f"Unleash's SDKs fill in {cond.attribute} themselves")
    value = cond.value
    if isinstance(value, Segment):
        return segment_terms(cond, negated, segments)
    if isinstance(value, bool):  # SDKs write a boolean as text: Python True, others true
        words = ("True", "true") if value else ("False", "false")
        return _strings(cond.model_copy(update={"value": list(words)}), negated, in_list=True)
    if isinstance(value, Semver):
        if any(p.isdigit() and int(p) >= 2**64 for p in _version_core(value.semver)):
            raise _refuse(cond, "Unleash reads version numbers up to 2^64 - 1")
        # Build metadata does not count in precedence, and the server refuses it in a value.
        return _semvers(cond, negated, value.semver.split("+", 1)[0])
    if isinstance(value, Instant):
        return _dates(cond, negated, value.date)
    if isinstance(value, (int, float)) or (
        isinstance(value, list) and not isinstance(value[0], str)
    ):
        numbers = value if isinstance(value, list) else [value]
        if any(abs(n) > SAFE_NUMBER for n in numbers if isinstance(n, (int, float))):
            raise _refuse(cond, f"Unleash takes numbers within ±{SAFE_NUMBER}")
        return _numbers(cond, negated)
    return _strings(cond, negated)


def normal_form(
    node: Node, negated: bool = False, segments: HeldSegments | None = None
) -> list[Term]:
    """The rule as an ``or`` of ``and`` s of constraints; ConfigError where Unleash cannot."""
    if isinstance(node, Condition):
        return literal(node, negated, segments)
    if isinstance(node, NotRule):
        return normal_form(node.negated, not negated, segments)
    parts = [
        normal_form(child, negated, segments)
        for child in (node.all_of if isinstance(node, AllOf) else node.any_of)
    ]
    if isinstance(node, AnyOf) != negated:  # an or: the terms of every part
        return _bounded([term for part in parts for term in part])
    return conjunction(parts)


def conjunction(parts: Sequence[list[Term]]) -> list[Term]:
    """``and`` of normal forms: every choice of one term from each part, joined."""
    count = 1
    for part in parts:
        count *= len(part)
        if count > MAX_STRATEGIES:
            raise ConfigError(
                f"its normal form needs over {MAX_STRATEGIES} Unleash strategies"
                " (an `and` of `or`s multiplies them)"
            )
    return _bounded([_join(choice) for choice in itertools.product(*parts)])


def _join(terms: Sequence[Term]) -> Term:
    seen: dict[Constraint, None] = {}
    for term in terms:
        for constraint in term:
            seen.setdefault(constraint)
    return tuple(seen)


def _bounded(terms: list[Term]) -> list[Term]:
    unique = list(dict.fromkeys(terms))
    if len(unique) > MAX_STRATEGIES:
        raise ConfigError(f"its normal form needs over {MAX_STRATEGIES} Unleash strategies")
    for term in unique:
        if len(term) > MAX_CONSTRAINTS:
            raise ConfigError(
                f"a term needs {len(term)} constraints, Unleash takes {MAX_CONSTRAINTS}"
            )
    return unique


def rule_terms(rule: AudienceRule | None, segments: HeldSegments | None = None) -> list[Term]:
    """The normal form of an audience (None: everyone); ConfigError where Unleash cannot say it."""
    return EVERYONE if rule is None else normal_form(rule.root, False, segments)


@dataclass(frozen=True, slots=True)
class RingStrategy:
    """One of the controller's strategies for a targeted rollout: a ring's term and percent."""

    ring: int
    percent: int
    constraints: Term


def ring_strategies(
    audience: AudienceRule | None,
    rings: Sequence[tuple[AudienceRule | None, int]],
    segments: HeldSegments | None = None,
) -> list[RingStrategy]:
    """The strategies that serve these rings (audience, whole percent): ConfigError if too many.

    Each ring's terms, each joined with each term of the rollout's audience.
    All share one ``groupId``, so a unit has one Unleash bucket in all of them.
    """
    outer = rule_terms(audience, segments)
    out: list[RingStrategy] = []
    for index, (rule, percent) in enumerate(rings):
        for term in conjunction([outer, rule_terms(rule, segments)]):
            out.append(RingStrategy(index, percent, term))
    if len(out) > MAX_STRATEGIES:
        raise ConfigError(f"the rings need {len(out)} Unleash strategies, at most {MAX_STRATEGIES}")
    return out


def plan_problem(
    audience: AudienceRule | None, stages: Sequence[AudienceRule | None]
) -> str | None:
    """Why Unleash cannot serve exactly these audiences, or None (the rule's place named)."""
    named = [("audience", audience), *((f"stages.{i}.audience", r) for i, r in enumerate(stages))]
    for where, rule in named:
        try:
            rule_terms(rule)
        except ConfigError as exc:
            return f"{where}: Unleash cannot serve this rule exactly: {exc}"
    distinct = {_key(rule): rule for rule in stages}
    try:  # the last stage has every ring
        ring_strategies(audience, [(rule, 100) for rule in distinct.values()])
    except ConfigError as exc:
        return f"backend.unleash: {exc}"
    return None


def _key(rule: AudienceRule | None) -> str:
    return "" if rule is None else rule.to_json()
