"""The evidence a statistical test leaves on a decision, ready for JSON."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

EvidenceValue = float | int | str | bool


def json_ready(value: EvidenceValue) -> EvidenceValue:
    """``value``, with an infinity as the string ``inf`` / ``-inf``."""
    # JSON has no infinities; the strings keep the meaning readable.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def evidence_of(result: DataclassInstance) -> dict[str, EvidenceValue]:
    """Every field of a test's result, JSON-ready (the results are flat: no copy needed)."""
    return {f.name: json_ready(getattr(result, f.name)) for f in fields(result)}
