"""Audience rules: which units a rollout stage speaks to, as one bounded model.

A rule is a tree. Its leaves are :class:`Condition` s on one attribute of the
evaluation context (``country == "TH"``, ``plan in ["pro", "enterprise"]``,
``app_version >= semver("2.3.0")``, ``registered_at < date("2024-01-01")``,
``user_id in segment("beta")``); its inner nodes are :class:`AllOf` (and),
:class:`AnyOf` (or) and :class:`NotRule` (not). This module is the JSON form
on the wire (``schemas/audience.schema.json``)::

    {"and": [{"attribute": "country", "op": "==", "value": "TH"},
             {"attribute": "plan", "op": "in", "value": ["pro", "enterprise"]}]}

:mod:`controller.core.rules.text` reads and prints the text form people write,
and :mod:`controller.core.rules.matching` compiles a rule into a function of a
context. Every bound is checked here, so a rule that validates is safe to
compile and evaluate whatever its source. ``docs/clients.md`` ("Audience
rules") specifies the model and its evaluation for other languages.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    Tag,
    model_validator,
)

from controller.core.rules.values import instant_ns, semver_key

MAX_TEXT_CHARS = 4096
"""The longest rule text; a longer audience belongs in a segment."""
MAX_DEPTH = 10
"""How deeply and / or / not may nest: a lone condition has depth 1."""
MAX_CONDITIONS = 64
"""Conditions in one rule."""
MAX_LIST_ITEMS = 256
"""Values in one ``in`` list; larger id sets belong in a segment."""
MAX_LIST_TOTAL = 1024
"""Values in all the ``in`` lists of one rule together."""
MAX_STRING_CHARS = 256
"""The longest string value (the longest unit id, too)."""
MAX_ATTRIBUTE_CHARS = 64
MAX_SEGMENT_CHARS = 128
MAX_SAFE_INTEGER = 2**53 - 1
"""Integers beyond this are not exact in a binary64 number, so clients would differ."""

RESERVED_WORDS = frozenset(
    {"and", "or", "not", "in", "true", "false", "starts_with", "ends_with", "contains"}
    | {"segment", "semver", "date"}
)
"""Words of the text form, which therefore cannot name an attribute."""

ATTRIBUTE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*$"
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
NAME_CHARS = _NAME_START | frozenset("0123456789.")

EQUALITY_OPS = ("==", "!=")
ORDER_OPS = ("<", "<=", ">", ">=")
STRING_OPS = ("starts_with", "ends_with", "contains")
MEMBERSHIP_OPS = ("in", "not in")
Operator = Literal[
    "==", "!=", "<", "<=", ">", ">=", "starts_with", "ends_with", "contains", "in", "not in"
]


def attribute_problem(name: str) -> str | None:
    """Why ``name`` cannot be an attribute name, or ``None`` if it can."""
    if not name or len(name) > MAX_ATTRIBUTE_CHARS:
        return f"an attribute name has 1 to {MAX_ATTRIBUTE_CHARS} characters"
    if name[0] not in _NAME_START or not set(name) <= NAME_CHARS:
        return "an attribute name is a letter or _ then letters, digits, _ or ."
    if name in RESERVED_WORDS:
        return f"{name!r} is a reserved word, not an attribute name"
    return None


def _attribute(name: str) -> str:
    problem = attribute_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def _unicode(text: str) -> str:
    """Refuse lone surrogates: such a string is not Unicode and has no UTF-8 form."""
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ValueError("a string must be valid Unicode (no lone surrogates)") from None
    return text


def _semver(text: str) -> str:
    if semver_key(text) is None:
        raise ValueError(f"{text!r} is not a semantic version such as 2.3.0 or 2.3.0-rc.1")
    return text


def _instant(text: str) -> str:
    if instant_ns(text) is None:
        raise ValueError(f"{text!r} is not a date (2024-01-01) or date-time (2024-01-01T12:00:00Z)")
    return text


def _only_float(value: object) -> object:
    """Keep integers out of the float branch, where a big one would silently round."""
    if isinstance(value, int):
        raise ValueError("an integer is out of range")  # noqa: TRY004 - pydantic reports only ValueError
    return value


_FROZEN = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

AttributeName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ATTRIBUTE_CHARS, pattern=ATTRIBUTE_PATTERN),
    AfterValidator(_attribute),  # the reserved words
]
Text = Annotated[
    str, StringConstraints(max_length=MAX_STRING_CHARS, strict=True), AfterValidator(_unicode)
]
Integer = Annotated[StrictInt, Field(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)]
Real = Annotated[StrictFloat, BeforeValidator(_only_float), Field(allow_inf_nan=False)]
Number = Integer | Real
SegmentName = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=MAX_SEGMENT_CHARS, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
    ),
]


class Semver(BaseModel):
    """A semantic version to compare with: ``{"semver": "2.3.0"}``, ``semver("2.3.0")`` in text."""

    model_config = _FROZEN
    semver: Annotated[str, StringConstraints(max_length=MAX_STRING_CHARS), AfterValidator(_semver)]


class Instant(BaseModel):
    """A date or date-time to compare with: ``{"date": "2024-01-01"}``, ``date("…")`` in text."""

    model_config = _FROZEN
    date: Annotated[str, StringConstraints(max_length=MAX_STRING_CHARS), AfterValidator(_instant)]


class Segment(BaseModel):
    """A named segment of unit ids: ``{"segment": "beta"}``, ``segment("beta")`` in text."""

    model_config = _FROZEN
    segment: SegmentName


Value = (
    StrictBool
    | Integer
    | Real
    | Text
    | Semver
    | Instant
    | Segment
    | Annotated[list[Text], Field(min_length=1, max_length=MAX_LIST_ITEMS)]
    | Annotated[list[Number], Field(min_length=1, max_length=MAX_LIST_ITEMS)]
)


class Condition(BaseModel):
    """``attribute op value``; which values each operator takes is checked here."""

    model_config = _FROZEN
    attribute: AttributeName
    op: Operator
    value: Value

    @model_validator(mode="after")
    def _operator_fits_value(self) -> Condition:
        problem = operand_problem(self.op, self.value)
        if problem:
            raise ValueError(problem)
        return self


def value_kind(value: object) -> str:
    """The kind of a condition's value, as the docs and error messages name it."""
    kinds: list[tuple[type, str]] = [(bool, "boolean"), (int, "number"), (float, "number")]
    kinds += [(str, "string"), (Semver, "semver"), (Instant, "date"), (Segment, "segment")]
    for cls, kind in kinds:
        if isinstance(value, cls):
            return kind
    return "list"


def operand_problem(op: str, value: object) -> str | None:
    """Why ``op`` cannot take ``value``, or ``None`` if it can."""
    kind = value_kind(value)
    allowed = {
        EQUALITY_OPS: ("string", "number", "boolean", "semver", "date"),
        ORDER_OPS: ("number", "semver", "date"),
        STRING_OPS: ("string",),
        MEMBERSHIP_OPS: ("list", "segment"),
    }
    for ops, kinds in allowed.items():
        if op in ops and kind not in kinds:
            return f"{op} takes {_either(kinds)}, not a {kind}"
    return None


def _either(kinds: tuple[str, ...]) -> str:
    names = [f"a {k}" for k in kinds]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _tag(value: Any) -> str:
    """Which node a JSON object (or model) is: by its one logical key, else a condition."""
    if isinstance(value, dict):
        return next((key for key in ("and", "or", "not") if key in value), "condition")
    for cls, tag in ((AllOf, "and"), (AnyOf, "or"), (NotRule, "not")):
        if isinstance(value, cls):
            return tag
    return "condition"


class AllOf(BaseModel):
    """Every rule matches: ``a and b and c``."""

    model_config = _FROZEN
    all_of: list[Rule] = Field(alias="and", min_length=2, max_length=MAX_CONDITIONS)


class AnyOf(BaseModel):
    """At least one rule matches: ``a or b or c``."""

    model_config = _FROZEN
    any_of: list[Rule] = Field(alias="or", min_length=2, max_length=MAX_CONDITIONS)


class NotRule(BaseModel):
    """The rule does not match: ``not a``."""

    model_config = _FROZEN
    negated: Rule = Field(alias="not")


Rule = Annotated[
    Annotated[Condition, Tag("condition")]
    | Annotated[AllOf, Tag("and")]
    | Annotated[AnyOf, Tag("or")]
    | Annotated[NotRule, Tag("not")],
    Discriminator(_tag),
]


for _model in (AllOf, AnyOf, NotRule):
    _model.model_rebuild()

Node = Condition | AllOf | AnyOf | NotRule


def children(node: Node) -> list[Node]:
    if isinstance(node, AllOf):
        return list(node.all_of)
    if isinstance(node, AnyOf):
        return list(node.any_of)
    if isinstance(node, NotRule):
        return [node.negated]
    return []


def depth(node: Node) -> int:
    """1 for a condition, one more for each and / or / not above it."""
    return 1 + max((depth(child) for child in children(node)), default=0)


def conditions(node: Node) -> list[Condition]:
    """The rule's conditions, left to right."""
    if isinstance(node, Condition):
        return [node]
    return [leaf for child in children(node) for leaf in conditions(child)]


def bounds_problem(node: Node) -> str | None:
    """Why the whole rule is too large, or ``None``; the nodes bound themselves."""
    if depth(node) > MAX_DEPTH:
        return f"the rule nests deeper than {MAX_DEPTH} levels"
    leaves = conditions(node)
    if len(leaves) > MAX_CONDITIONS:
        return f"the rule has {len(leaves)} conditions, at most {MAX_CONDITIONS}"
    listed = sum(len(leaf.value) for leaf in leaves if isinstance(leaf.value, list))
    if listed > MAX_LIST_TOTAL:
        return f"the rule lists {listed} values, at most {MAX_LIST_TOTAL}: use a segment"
    return None


class AudienceRule(RootModel[Rule]):
    """A whole audience rule on the wire, bounded as a whole."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="after")
    def _bounded(self) -> AudienceRule:
        problem = bounds_problem(self.root)
        if problem:
            raise ValueError(problem)
        return self

    def to_json(self) -> str:
        """The compact JSON form, with the wire's keys (``and``, ``or``, ``not``)."""
        return self.model_dump_json(by_alias=True)
