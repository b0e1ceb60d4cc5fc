"""JSON as the wire carries it: the one type of a JSON value and of a JSON object, and
how a number of the evidence is written (:data:`Number`).

Alert details, and the parts of a message that are JSON and nothing narrower,
are typed with these (pydantic's own JSON value, so a model may hold one and
validate it), so a reader narrows each value it takes, as a reader of the
published message would.
"""

from __future__ import annotations

import math
from typing import Annotated, TypeAlias

from pydantic import JsonValue, PlainSerializer

JsonObject: TypeAlias = dict[str, JsonValue]
"""A JSON object: an alert's details, a message read before its model."""


def _json_number(value: float) -> int | float | str:
    return value if math.isfinite(value) else str(value)


Number = Annotated[
    int | float,
    PlainSerializer(_json_number, return_type=int | float | str, when_used="json"),
]
"""A number as the evidence writes it: an integer stays one; infinities as ``"inf"``, read
back as floats by pydantic's own float (which takes ``"inf"`` and ``"-inf"``, from Python
and JSON alike: no validator of ours runs for each number of each gate)."""

__all__ = ["JsonObject", "JsonValue", "Number"]
