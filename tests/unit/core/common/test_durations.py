"""Plan durations: the short form, ISO 8601 and seconds read; anything else explained."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.core.common.errors import ConfigError
from controller.core.rollouts.plan import load_plan
from controller.core.rollouts.plan_parts import Stage


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("10m", timedelta(minutes=10)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("45s", timedelta(seconds=45)),
        ("0.5h", timedelta(minutes=30)),
        (" 10M ", timedelta(minutes=10)),
        ("PT10M", timedelta(minutes=10)),
        ("P1D", timedelta(days=1)),
        (600, timedelta(minutes=10)),
        ("600", timedelta(minutes=10)),
        (timedelta(hours=2), timedelta(hours=2)),
    ],
)
def test_durations_read(written: object, meant: timedelta) -> None:
    assert Stage.model_validate({"percent": 5, "min_duration": written}).min_duration == meant


@pytest.mark.parametrize(
    "written", ["10 minutes", "ten minutes", "10x", "m10", "P1X", "1" * 40 + "d", "x" * 100]
)
def test_other_text_is_explained_in_the_plans_terms(written: str) -> None:
    text = f"stages:\n  - {{percent: 5, min_duration: '{written}'}}\n  - {{percent: 100}}\n"
    with pytest.raises(ConfigError) as caught:
        load_plan(text)
    message = str(caught.value)
    assert "stages.0.min_duration: not a duration: write it as 30s, 10m" in message
    assert "PT10M" in message
    assert written.strip() not in message  # never echoed


def test_the_bounds_still_hold_for_the_short_form() -> None:
    with pytest.raises(ConfigError, match="min_duration"):
        load_plan("stages:\n  - {percent: 5, min_duration: 400d}\n  - {percent: 100}\n")
