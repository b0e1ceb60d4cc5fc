"""Read an audience rule against what the team's contexts hold: a catalogue, a lint, a preview.

A rule that parses can still speak of nothing: an attribute no context
carries (``contry``), a version compared as a string, a segment nobody
keeps, or ``country == "TH" and country == "VN"``. The team declares its
context attributes, with their types, and its segments in a small
catalogue (YAML or JSON, :func:`load_catalogue`)::

    attributes:
      country: string
      plan: string
      app_version: semver
      age: number
      beta_opt_in: bool
      registered_at: date
    segments: [beta, staff]

:func:`lint` lists what is wrong with a rule against it (errors) or merely
suspicious (warnings), and :func:`preview` counts how many example contexts
a rule matches. Both are pure; ``rolloutctl rule draft`` uses them on a
model's draft.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.core.common import ConfigError, load_document
from controller.core.rules import (
    NO_SEGMENTS,
    AllOf,
    AnyOf,
    AttributeName,
    Audience,
    AudienceRule,
    Condition,
    Context,
    Node,
    Segment,
    SegmentLookup,
    SegmentName,
    children,
    conditions,
    value_kind,
)

AttributeType = Literal["string", "number", "bool", "semver", "date"]
MAX_CATALOGUE_ENTRIES = 512
"""Attributes, and segments, one catalogue may declare."""

_KINDS: dict[str, tuple[str, ...]] = {
    "string": ("string",),
    "number": ("number",),
    "bool": ("boolean",),
    "semver": ("semver",),
    "date": ("date",),
}
"""The value kinds (:func:`controller.core.rules.audience.value_kind`) each type compares with."""


class Catalogue(BaseModel):
    """The context attributes (name → type) and segment names a team has."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    attributes: Annotated[
        dict[AttributeName, AttributeType], Field(max_length=MAX_CATALOGUE_ENTRIES)
    ]
    segments: Annotated[list[SegmentName], Field(max_length=MAX_CATALOGUE_ENTRIES)] = []


def parse_catalogue(data: object, *, source: str = "catalogue") -> Catalogue:
    """A catalogue from parsed YAML or JSON; a :class:`ConfigError` naming the field if not."""
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(catalogue)"
        raise ConfigError(f"{source}: {where}: {first['msg']}") from None


def load_catalogue(text: str, *, source: str = "catalogue", name: str = "") -> Catalogue:
    """A catalogue from YAML text, or JSON where the file ``name`` ends in ``.json``,
    bounded as :func:`load_yaml` is."""
    return parse_catalogue(load_document(text, source=source, name=name), source=source)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong (``error``) or suspicious (``warning``) in a rule."""

    severity: Literal["error", "warning"]
    message: str


def lint(rule: AudienceRule, catalogue: Catalogue | None) -> list[Finding]:
    """What is wrong with ``rule`` (against ``catalogue``, if any), errors first."""
    found = [problem for leaf in conditions(rule.root) for problem in _condition(leaf, catalogue)]
    found += _contradictions(rule.root)
    unique = list(dict.fromkeys(found))
    return sorted(unique, key=lambda f: f.severity != "error")


def errors(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def _condition(leaf: Condition, catalogue: Catalogue | None) -> list[Finding]:
    if catalogue is None:
        return []
    name = leaf.attribute
    declared = catalogue.attributes.get(name)
    found: list[Finding] = []
    if declared is None:
        known = ", ".join(sorted(catalogue.attributes)) or "none"
        found.append(Finding("error", f"unknown attribute {name!r} (the catalogue has: {known})"))
    if isinstance(leaf.value, Segment):
        if leaf.value.segment not in catalogue.segments:
            known = ", ".join(catalogue.segments) or "none"
            found.append(
                Finding("error", f"unknown segment {leaf.value.segment!r} (known: {known})")
            )
        if declared not in (None, "string"):
            found.append(Finding("error", f"{name} is a {declared}: segments hold string ids"))
        return found
    kind = value_kind(leaf.value[0] if isinstance(leaf.value, list) else leaf.value)
    if declared is not None and kind not in _KINDS[declared]:
        found.append(
            Finding("error", f"{name} is a {declared}, compared with a {kind}: it never matches")
        )
    return found


def _contradictions(node: Node) -> list[Finding]:
    """An ``and`` that two equalities make impossible, an ``or`` true whenever known."""
    found = [problem for child in children(node) for problem in _contradictions(child)]
    parts = [c for c in children(node) if isinstance(c, Condition)]
    if isinstance(node, AllOf):
        required: dict[str, object] = {}
        for part in parts:
            if part.op != "==":
                continue
            other = required.setdefault(part.attribute, part.value)
            if other != part.value:
                found.append(
                    Finding("error", f"{part.attribute} cannot be two values at once: never true")
                )
        for part in parts:
            if part.op == "!=" and required.get(part.attribute, object()) == part.value:
                found.append(Finding("error", f"{part.attribute} == and != one value: never true"))
    if isinstance(node, AnyOf):
        equal = {(p.attribute, repr(p.value)) for p in parts if p.op == "=="}
        for part in parts:
            if part.op == "!=" and (part.attribute, repr(part.value)) in equal:
                found.append(
                    Finding(
                        "warning",
                        f"{part.attribute} == or != one value: every context with "
                        f"{part.attribute} matches",
                    )
                )
    return found


@dataclass(frozen=True, slots=True)
class Preview:
    """How many of some example contexts a rule matches, does not, or cannot tell."""

    total: int
    matched: int
    unknown: int

    @property
    def missed(self) -> int:
        return self.total - self.matched - self.unknown


def preview(
    rule: AudienceRule, contexts: Sequence[Context], segments: SegmentLookup = NO_SEGMENTS
) -> Preview:
    """Evaluate ``rule`` on each context; unknown (a missing attribute, say) does not match."""
    audience = Audience.of(rule)
    truths = [audience.truth(context, segments) for context in contexts]
    return Preview(
        total=len(truths),
        matched=sum(t is True for t in truths),
        unknown=sum(t is None for t in truths),
    )


def preview_findings(seen: Preview) -> list[Finding]:
    """Warnings a preview gives: an audience of nobody, or of everybody."""
    if seen.total == 0:
        return []
    if seen.matched == 0:
        return [Finding("warning", f"matches none of the {seen.total} example contexts")]
    if seen.matched == seen.total and seen.total > 1:
        return [Finding("warning", f"matches all {seen.total} example contexts: wider than asked?")]
    return []
