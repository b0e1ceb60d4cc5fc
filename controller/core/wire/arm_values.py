"""Typed values for a flag's two arms: what an app is served besides the arm's name.

A plan may declare the value each arm serves, with one type for both::

    values: {type: string, control: "v1-ranker", treatment: "v2-ranker"}

The types are ``boolean`` (the default: control ``false``, treatment
``true``, as a flag without values serves), ``string``, ``number`` and
``object``. The values travel in the flag state and are signed with it
(:mod:`controller.core.wire.flagstates`), so they are bounded like any input from
outside: a string up to :data:`MAX_STRING_CHARS` characters; a number
finite and within ±:data:`MAX_SAFE_NUMBER` (the integers JavaScript holds
exactly); an object a JSON object nested
at most :data:`MAX_OBJECT_DEPTH` levels, with at most
:data:`MAX_OBJECT_ITEMS` values, keys up to :data:`MAX_KEY_CHARS`
characters and at most :data:`MAX_OBJECT_BYTES` bytes as compact JSON.

A number keeps the type it was declared with, because typed clients check
it: OpenFeature's Python OFREP provider refuses ``1`` where a float is asked
for. Where either arm is a float both are served as floats (control ``1``,
treatment ``2.5``: ``1.0`` and ``2.5``), else both as integers. What is
signed is canonical instead (:func:`canonical`: a whole float written as an
integer), since JavaScript, which has one number type, writes ``1.0`` as
``1`` when it rebuilds the signed bytes.

:func:`values_problem` says in words what is wrong with a declaration, or
nothing; :class:`ArmValues` is the declaration as plans and flag states
carry it, refused with that reason.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

ValueType = Literal["boolean", "string", "number", "object"]
TYPES: tuple[str, ...] = ("boolean", "string", "number", "object")
ARMS = ("control", "treatment")
MAX_STRING_CHARS = 1024
"""The longest string value (an arm's, or one inside an object value)."""
MAX_SAFE_NUMBER = 2**53 - 1
"""The largest magnitude of a number value: beyond it JavaScript's numbers lose integers."""
MAX_OBJECT_DEPTH = 8
"""How deeply an object value may nest objects and arrays (the object itself is level 1)."""
MAX_OBJECT_ITEMS = 256
"""How many values (keys' values and array items, at every level) an object value may hold."""
MAX_KEY_CHARS = 128
"""The longest key in an object value."""
MAX_OBJECT_BYTES = 4096
"""The largest object value as compact JSON: flag states stay small."""
SHOWN_CHARS = 60
"""How much of a value :meth:`ArmValues.text` shows."""


class ArmValues(BaseModel):
    """The value each arm serves, with the type both share."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ValueType = Field(default="boolean", description="The type of both arms' values.")
    control: Any = Field(
        default=None, description="What control serves (boolean: false unless given)."
    )
    treatment: Any = Field(
        default=None, description="What treatment serves (boolean: true unless given)."
    )

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("type", "boolean") not in TYPES:
            return data  # pydantic names what is wrong with the shape or the type
        kind = data.get("type", "boolean")
        given = dict(data)
        if kind == "boolean":
            given.setdefault("control", False)
            given.setdefault("treatment", True)
        problem = values_problem(kind, given.get("control"), given.get("treatment"))
        if problem:
            raise ValueError(problem)
        if kind == "number" and any(isinstance(given[arm], float) for arm in ARMS):
            given.update({arm: float(given[arm]) for arm in ARMS})
        return given

    def of(self, treated: bool) -> Any:
        """The value treatment serves (``treated``), or control's."""
        return self.treatment if treated else self.control

    @property
    def default(self) -> bool:
        """Whether these are a flag's values without a declaration: boolean, false and true."""
        return self.type == "boolean" and self.control is False and self.treatment is True

    def signed(self) -> list[Any]:
        """The values as the signed form holds them: ``[type, control, treatment]``,
        canonical."""
        return [self.type, canonical(self.control), canonical(self.treatment)]

    def text(self, width: int = SHOWN_CHARS) -> str:
        """For people: ``treatment "v2", control "v1" (string)``, each value as JSON, cut
        to ``width`` characters."""
        shown = [_cut(orjson.dumps(self.of(arm)).decode(), width) for arm in (True, False)]
        return f"treatment {shown[0]}, control {shown[1]} ({self.type})"


def values_problem(kind: str, control: object, treatment: object) -> str:
    """What is wrong with ``control`` and ``treatment`` as values of type ``kind``, or ""."""
    for arm, value in (("control", control), ("treatment", treatment)):
        if value is None:
            return f"{arm} is required with type {kind}"
        problem = _value_problem(kind, value)
        if problem:
            return f"{arm}: {problem}"
    return ""


def _value_problem(kind: str, value: object) -> str:
    found = json_type(value)
    if found != kind:
        return f"type {kind} needs {_shown(kind)}, got {_shown(found)}"
    if isinstance(value, str):
        return _string_problem(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _number_problem(value)
    if isinstance(value, dict):
        return _object_problem(value)
    return ""


def json_type(value: object) -> str:
    """The JSON type of ``value`` (boolean, string, number, object, array, null), or its own."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "null" if value is None else f"{type(value).__name__} (not JSON)"


def _shown(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _string_problem(value: str) -> str:
    if len(value) > MAX_STRING_CHARS:
        return f"a string of {len(value)} characters, over {MAX_STRING_CHARS}"
    return _unicode_problem(value)


def _unicode_problem(text: str) -> str:
    """A lone surrogate has no UTF-8 form: the value could be neither signed nor sent."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return f"{text[:40]!a} is not valid Unicode (a lone surrogate)"
    return ""


def _number_problem(value: float) -> str:
    if isinstance(value, int):
        # No float conversion: an integer past a float's range would raise OverflowError.
        if abs(value) > MAX_SAFE_NUMBER:
            return (
                f"an integer of {value.bit_length()} bits is beyond ±{MAX_SAFE_NUMBER} (2^53 - 1)"
            )
        return ""
    if not math.isfinite(value):
        return f"{value} is not a finite number"
    if abs(value) > MAX_SAFE_NUMBER:
        return f"{value:g} is beyond ±{MAX_SAFE_NUMBER} (2^53 - 1)"
    return ""


def _object_problem(value: dict[Any, Any]) -> str:
    """Bounds an object walked level by level, so that no depth can exhaust a recursion."""
    level: list[object] = [value]
    depth = items = 0
    while level:
        depth += 1
        containers = [node for node in level if isinstance(node, dict | list)]
        if containers and depth > MAX_OBJECT_DEPTH:
            return f"the object nests deeper than {MAX_OBJECT_DEPTH} levels"
        below: list[object] = []
        for node in level:
            problem = _node_problem(node)
            if problem:
                return problem
            if isinstance(node, dict):
                below.extend(node.values())
            elif isinstance(node, list):
                below.extend(node)
        items += len(below)
        if items > MAX_OBJECT_ITEMS:
            return f"the object holds more than {MAX_OBJECT_ITEMS} values"
        level = below
    size = len(orjson.dumps(value))
    if size > MAX_OBJECT_BYTES:
        return f"the object is {size} bytes of JSON, over {MAX_OBJECT_BYTES}"
    return ""


def _node_problem(node: object) -> str:
    """What is wrong with one value inside an object value (its own bounds, not its children's)."""
    if isinstance(node, dict):
        return _keys_problem(node)
    kind = json_type(node)
    if kind in ("string", "number"):
        return _value_problem(kind, node)
    return "" if kind in ("boolean", "array", "null") else f"the object holds {_shown(kind)}"


def _keys_problem(node: dict[Any, Any]) -> str:
    for key in node:
        if not isinstance(key, str):
            return f"the object has a key that is not a string: {key!r:.40}"
        if len(key) > MAX_KEY_CHARS:
            return f"the object has a key of {len(key)} characters, over {MAX_KEY_CHARS}"
        if _unicode_problem(key):
            return "the object has a key that is not valid Unicode (a lone surrogate)"
    return ""


def canonical(value: Any) -> Any:
    """``value`` as signatures cover it: every whole float written as an integer (2.0 is 2),
    as JavaScript writes it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


BOOLEAN = ArmValues()
"""A flag without declared values: control serves false, treatment true."""


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
