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
    cohort_check,
    holdout_report,
    ratio_text,
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
    "cohort_check",
    "holdout_report",
    "ratio_text",
]
