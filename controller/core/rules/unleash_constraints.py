"""One condition of an audience rule as Unleash constraints, exactly or not at all.

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

Here: the constraint itself, and the terms of one condition on a string,
number, version or date. Which of them a condition takes, segments, and the
normal form of a whole rule are :mod:`controller.core.rules.unleash_rules`'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.core.common import ConfigError
from controller.core.rules.audience import Condition
from controller.core.rules.text import to_text
from controller.core.rules.values import instant_ns

MAX_CONSTRAINT_VALUES = 250
"""Values in one constraint (Unleash's ``constraintValues`` limit)."""
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


def number_present(attribute: str, term: Term) -> list[Term]:
    """``term`` where the field reads as a number: one term at or above the pivot, one below."""
    high, low = (Constraint(attribute, op, value=PIVOT) for op in ("NUM_GTE", "NUM_LT"))
    return [(*term, high), (*term, low)]


def number_text(value: int | float) -> str:
    """A number as Unleash reads it: an integer without a point."""
    return str(value) if isinstance(value, int) else repr(value)


def refusal(condition: Condition, why: str) -> ConfigError:
    """The error that refuses ``condition``, named in the rule text."""
    return ConfigError(f"`{to_text(condition)}`: {why}")


def string_terms(cond: Condition, negated: bool, *, in_list: bool = False) -> list[Term]:
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
        raise refusal(cond, "Unleash takes no empty string in a constraint")
    if len(values) > MAX_CONSTRAINT_VALUES:
        raise refusal(cond, f"Unleash takes at most {MAX_CONSTRAINT_VALUES} values a constraint")
    if negated:
        raise refusal(
            cond,
            "negated, a string condition would match a context without the attribute in"
            " Unleash (an inverted constraint holds there, and no constraint tests presence)",
        )
    return [(Constraint(attribute, operator, values),)]


def number_terms(cond: Condition, negated: bool) -> list[Term]:
    attribute, value = cond.attribute, cond.value
    op: str = cond.op
    if isinstance(value, list):  # in / not in a list of numbers: one equality each
        numbers = [v for v in value if isinstance(v, (int, float))]
        if (op == "in") != negated:
            return [(Constraint(attribute, "NUM_EQ", value=number_text(v)),) for v in numbers]
        unequal = [
            Constraint(attribute, "NUM_EQ", value=number_text(v), inverted=True) for v in numbers
        ]
        return number_present(attribute, tuple(unequal))
    assert isinstance(value, (int, float))
    op = _OPPOSITE[op] if negated else op
    if op in _ORDER:
        return [(Constraint(attribute, f"NUM_{_ORDER[op]}", value=number_text(value)),)]
    equal = Constraint(attribute, "NUM_EQ", value=number_text(value), inverted=op == "!=")
    return number_present(attribute, (equal,)) if op == "!=" else [(equal,)]


def semver_terms(cond: Condition, negated: bool, version: str) -> list[Term]:
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


def date_terms(cond: Condition, negated: bool, text: str) -> list[Term]:
    op = _OPPOSITE[cond.op] if negated else cond.op
    ns = instant_ns(text)
    if ns is None or ns % 1_000_000:
        raise refusal(cond, "Unleash reads dates to the millisecond")
    stamp, name = utc_text(ns), cond.attribute
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


def version_core(text: str) -> list[str]:
    return text.split("+", 1)[0].split("-", 1)[0].split(".")


def utc_text(ns: int) -> str:
    """``ns`` since the epoch as RFC 3339 in UTC with milliseconds (no host time zone)."""
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415 - pure arithmetic only

    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
