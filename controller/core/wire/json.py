"""JSON as the wire carries it: the one type of a JSON value and of a JSON object.

Alert details, and the parts of a message that are JSON and nothing narrower,
are typed with these (pydantic's own JSON value, so a model may hold one and
validate it), so a reader narrows each value it takes, as a reader of the
published message would.
"""

from __future__ import annotations

from typing import TypeAlias

from pydantic import JsonValue

JsonObject: TypeAlias = dict[str, JsonValue]
"""A JSON object: an alert's details, a message read before its model."""

__all__ = ["JsonObject", "JsonValue"]
