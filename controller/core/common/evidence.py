"""The evidence a statistical test leaves on a decision, ready for JSON.

A decision's evidence is a JSON document built in the process (the gate's
tests, the plan's policy, where the stage stands) and published as it is:
:data:`JsonObject` types it as JSON, so what reads it in the process narrows
each value it takes, as a reader of the published message would.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

EvidenceValue = float | int | str | bool
JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
"""Any JSON value, as the process builds it (infinities become strings when written)."""
JsonObject: TypeAlias = dict[str, JsonValue]
"""A JSON object: a decision's evidence, an alert's details."""

_NAMES: dict[type, tuple[str, ...]] = {}
"""Each result class's field names, looked up once: every gate writes several results."""


def json_ready(value: EvidenceValue) -> EvidenceValue:
    """``value``, with an infinity as the string ``inf`` / ``-inf``."""
    # JSON has no infinities; the strings keep the meaning readable.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def evidence_of(result: DataclassInstance) -> JsonObject:
    """Every field of a test's result, JSON-ready (the results are flat: no copy needed)."""
    kind = type(result)
    names = _NAMES.get(kind)
    if names is None:
        names = _NAMES[kind] = tuple(f.name for f in fields(result))
    evidence: JsonObject = {}
    for name in names:
        value = getattr(result, name)
        # json_ready, inline: this runs for every field of every test of every gate.
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        evidence[name] = value
    return evidence
