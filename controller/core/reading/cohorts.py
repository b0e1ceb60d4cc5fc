"""A rollout's holdout cohort as its status and the console read it.

A plan that names a holdout keeps a share of units out of every release; the apps report
their events with cohort ``holdout``, counted in cells of their own. A rollout whose apps
send no such event reads "ok" on its own arms' sample ratio all the same: the check here,
from the holdout's cells (:func:`controller.core.holdouts.cohort_check`, worded by
:func:`controller.core.holdouts.ratio_text`, as the holdout's report says it), is shown
beside it. Pure.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class HoldoutCheck(BaseModel):
    """The plan's holdout seen from one rollout: held-out units against those expected."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    holdout: str = Field(description="The holdout the plan names.")
    missing: bool = Field(
        description="No held-out unit where some were expected: the apps may not report"
        " cohort holdout with their events."
    )
    text: str = Field(description="In words, as the holdout's report says it.")


COHORT_MISSING = "holdout cohort missing"
"""What the sample-ratio check adds, in a word, when the holdout's cohort is missing."""


def ratio_word(word: str, holdout: HoldoutCheck | None) -> str:
    """The sample-ratio check in a word (``ok``, ``mismatch``, …), with the holdout's
    cohort where it is missing: ``ok; holdout cohort missing``."""
    return f"{word}; {COHORT_MISSING}" if holdout is not None and holdout.missing else word


def holdout_line(holdout: HoldoutCheck) -> str:
    """``holdout h1: no held-out units against 120 expected (do the apps report …?)``."""
    return f"holdout {holdout.holdout}: {holdout.text}"
