"""The sample-ratio word with the holdout's cohort: "ok" never stands alone over a missing one."""

from __future__ import annotations

import pytest

from controller.core.reading.cohorts import HoldoutCheck, holdout_line, ratio_word

MISSING = HoldoutCheck(holdout="q4", missing=True, text="no held-out units against 100 expected")
SEEN = HoldoutCheck(holdout="q4", missing=False, text="98 held-out units against 100 expected")


@pytest.mark.parametrize(
    ("word", "holdout", "said"),
    [
        ("ok", None, "ok"),
        ("ok", SEEN, "ok"),
        ("ok", MISSING, "ok; holdout cohort missing"),
        ("mismatch", MISSING, "mismatch; holdout cohort missing"),
        ("no units yet", MISSING, "no units yet; holdout cohort missing"),
    ],
)
def test_the_ratio_word_adds_a_missing_cohort(
    word: str, holdout: HoldoutCheck | None, said: str
) -> None:
    assert ratio_word(word, holdout) == said


def test_the_holdout_line_names_it() -> None:
    assert holdout_line(MISSING) == "holdout q4: no held-out units against 100 expected"
