"""Audience rules as Unleash strategy constraints, exactly or not at all.

Unleash serves a feature to a unit when any enabled strategy matches it, and
a strategy matches when all its constraints do: an ``or`` of ``and`` s of
constraints, each constraint one operator on one context field, possibly
``inverted``. So a rule is rewritten in disjunctive normal form (negations
pushed down to the conditions, ``and`` distributed over ``or``): each term is
one strategy. Kleene's logic keeps De Morgan's laws and distributivity, so
the rewritten rule has the truth of the original for every context, and a
term is true iff each of its literals is.

Each literal becomes constraints that are true exactly when the literal is
(:mod:`controller.core.rules.unleash_constraints`, which says how for each type).

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

from controller.core.common import ConfigError
from controller.core.rules.audience import (
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
from controller.core.rules.held_segments import HeldSegments
from controller.core.rules.unleash_constraints import (
    MAX_CONSTRAINT_VALUES,
    SAFE_NUMBER,
    Constraint,
    Term,
    date_terms,
    number_terms,
    refusal,
    semver_terms,
    string_terms,
    version_core,
)

MAX_STRATEGIES = 30
"""Strategies on one feature environment (Unleash's ``featureEnvironmentStrategies`` limit)."""
MAX_CONSTRAINTS = 30
"""Constraints on one strategy (Unleash's ``constraints`` limit)."""
RESERVED_FIELDS = frozenset({"currentTime", "environment", "appName", "properties"})
"""Context fields Unleash's SDKs fill in themselves, so a rule cannot mean the same on them."""
EVERYONE: list[Term] = [()]
"""The normal form of no rule: one term with no constraint."""


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
            raise refusal(cond, "negated, it would match a context without the attribute")
        if len(ids) > MAX_CONSTRAINT_VALUES:
            why = f"holds {len(ids)} ids, Unleash takes {MAX_CONSTRAINT_VALUES} a constraint"
            raise refusal(cond, f"segment {name!r} {why}")
        if not ids:  # no strategy would serve everyone where it was the only one
            raise refusal(cond, f"segment {name!r} is empty: Unleash takes no empty constraint")
        return [(Constraint(cond.attribute, "IN", tuple(sorted(ids))),)]
    if compiled is None:
        raise refusal(cond, f"segment {name!r} is not held (there is no such segment)")
    if any(isinstance(c.value, Segment) for c in conditions(compiled.rule.root)):
        raise refusal(cond, f"segment {name!r} names a segment: segments nest once")
    try:
        terms = normal_form(compiled.rule.root, negated, segments)
    except ConfigError as exc:
        raise refusal(cond, f"segment {name!r}: {exc}") from None
    for term in terms:  # an inverted constraint holds without the field
        if not any(c.context == cond.attribute and not c.inverted for c in term):
            why = f"'s rule does not test {cond.attribute} (no constraint tests it is there)"
            raise refusal(cond, f"segment {name!r}{why}")
    return terms


def literal(cond: Condition, negated: bool, segments: HeldSegments | None = None) -> list[Term]:
    """The terms that are true exactly when ``cond`` (or ``not cond``) is; ConfigError if none."""
    if cond.attribute in RESERVED_FIELDS:
        raise refusal(cond, f"Unleash's SDKs fill in {cond.attribute} themselves")
    value = cond.value
    if isinstance(value, Segment):
        return segment_terms(cond, negated, segments)
    if isinstance(value, bool):  # SDKs write a boolean as text: Python True, others true
        words = ("True", "true") if value else ("False", "false")
        return string_terms(cond.model_copy(update={"value": list(words)}), negated, in_list=True)
    if isinstance(value, Semver):
        if any(p.isdigit() and int(p) >= 2**64 for p in version_core(value.semver)):
            raise refusal(cond, "Unleash reads version numbers up to 2^64 - 1")
        # Build metadata does not count in precedence, and the server refuses it in a value.
        return semver_terms(cond, negated, value.semver.split("+", 1)[0])
    if isinstance(value, Instant):
        return date_terms(cond, negated, value.date)
    if isinstance(value, (int, float)) or (
        isinstance(value, list) and not isinstance(value[0], str)
    ):
        numbers = value if isinstance(value, list) else [value]
        if any(abs(n) > SAFE_NUMBER for n in numbers if isinstance(n, (int, float))):
            raise refusal(cond, f"Unleash takes numbers within ±{SAFE_NUMBER}")
        return number_terms(cond, negated)
    return string_terms(cond, negated)


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
