"""Holdouts compared: the units no release reached against everyone else, per flag and in all.

Pure (docs/architecture.md, "Holdouts").
"""

from controller.core.holdouts.comparison import (
    DEFAULT_ALPHA,
    MIN_ALPHA,
    Comparison,
    FlagCells,
    GuardrailComparison,
    HoldoutReport,
    holdout_report,
)
from controller.core.holdouts.overlap import People

__all__ = [
    "DEFAULT_ALPHA",
    "MIN_ALPHA",
    "Comparison",
    "FlagCells",
    "GuardrailComparison",
    "HoldoutReport",
    "People",
    "holdout_report",
]
