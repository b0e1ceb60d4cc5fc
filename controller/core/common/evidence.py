"""The evidence a statistical test leaves on a decision, ready for JSON.

A test's result is a flat dataclass of numbers and flags; :func:`evidence_of`
gives its fields ready for JSON (an infinity as a string), for the typed
parts of a decision's evidence (:mod:`controller.core.wire.evidence`) to read.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

EvidenceValue = float | int | str | bool

_NAMES: dict[type, tuple[str, ...]] = {}
"""Each result class's field names, looked up once: every gate writes several results."""


def json_ready(value: EvidenceValue) -> EvidenceValue:
    """``value``, with an infinity as the string ``inf`` / ``-inf``."""
    # JSON has no infinities; the strings keep the meaning readable.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def evidence_of(result: DataclassInstance) -> dict[str, EvidenceValue]:
    """Every field of a test's result, JSON-ready (the results are flat: no copy needed)."""
    kind = type(result)
    names = _NAMES.get(kind)
    if names is None:
        names = _NAMES[kind] = tuple(f.name for f in fields(result))
    evidence: dict[str, EvidenceValue] = {}
    for name in names:
        value = getattr(result, name)
        # json_ready, inline: this runs for every field of every test of every gate.
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        evidence[name] = value
    return evidence
