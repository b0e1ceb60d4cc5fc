"""The error budget over tiers: OR between tiers, AND within one, and an unread window
holds; the reason names the tier that burns and its burn rate over each window."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.rollouts import error_budget
from controller.core.rollouts.plan import Plan, parse_plan
from controller.core.wire import ErrorBudget, GateEvidence, TierBurn

QUERY = "sum(rate(errors_total[{{window}}])) / sum(rate(requests_total[{{window}}])) / 0.001"
QUIET: dict[str, float | str | None] = {"5m": 0.5, "30m": 0.5, "1h": 0.5, "6h": 0.5, "3d": 0.5}
"""The workbook's windows, every one burning at half the rate the SLO allows."""


def plan(**burn: Any) -> Plan:
    return parse_plan(
        {
            "stages": [{"percent": 10, "min_duration": "5m"}, {"percent": 100}],
            "guardrails": [{"metric": "error_rate"}],
            "burn_rate": {"query": QUERY, **burn},
            "windows": [],
        }
    )


WORKBOOK = plan()


def budget(burns: dict[str, float | str | None], the_plan: Plan = WORKBOOK) -> ErrorBudget:
    """``None``: the window's reading was not given at all."""
    given = {w: v for w, v in burns.items() if v is not None}
    got = error_budget(the_plan, given)
    assert got is not None
    return got


@pytest.mark.parametrize(
    ("burns", "holds", "tiers", "reason"),
    [
        (QUIET, False, [False, False, False], "no tier's burn rate is above its threshold"),
        # A tier burns over both its windows: the fast one, the slow ones.
        (
            QUIET | {"1h": 20.0, "5m": 16.0},
            True,
            [True, False, False],
            "is above 14.4 over every window of tier 1 of 3 (1h 20.00, 5m 16.00)",
        ),
        (
            QUIET | {"6h": 7.0, "30m": 9.5},
            True,
            [False, True, False],
            "is above 6 over every window of tier 2 of 3 (6h 7.00, 30m 9.50)",
        ),
        (
            QUIET | {"3d": 1.2, "6h": 1.1},
            True,
            [False, False, True],
            "is above 1 over every window of tier 3 of 3 (3d 1.20, 6h 1.10)",
        ),
        # AND within a tier: the long window alone, or the short one alone, is no burn.
        (QUIET | {"1h": 20.0}, False, [False, False, False], "above 14.4: 1h 20.00, 5m 0.50"),
        (QUIET | {"5m": 90.0}, False, [False, False, False], "above 14.4: 1h 0.50, 5m 90.00"),
        (QUIET | {"1h": 14.4, "5m": 14.4}, False, [False, False, False], "no tier's"),
        # OR between tiers: the first that burns is named; every one is kept.
        (
            QUIET | {"1h": 20.0, "5m": 16.0, "6h": 7.0, "30m": 9.0},
            True,
            [True, True, False],
            "of tier 1 of 3",
        ),
        # A window shared by two tiers counts in both.
        (QUIET | {"3d": 2.0, "6h": 7.0, "30m": 8.0}, True, [False, True, True], "of tier 2 of 3"),
        # An unread window holds its tier, never as healthy: not given, or unusable.
        (
            QUIET | {"3d": None},
            True,
            [False, False, None],
            "the burn rate over 3d cannot be read (tier 3 of 3): not taken as healthy",
        ),
        (
            QUIET | {"6h": "no series"},
            True,
            [False, None, None],
            "the burn rate over 6h cannot be read (tier 2, 3 of 3)",
        ),
        (
            dict.fromkeys(QUIET),
            True,
            [None, None, None],
            "over 5m, 30m, 1h, 6h, 3d cannot be read (tier 1, 2, 3 of 3)",
        ),
        # A tier that burns is named before a window that cannot be read.
        (
            QUIET | {"1h": 20.0, "5m": 16.0, "3d": "stale"},
            True,
            [True, False, None],
            "is above 14.4 over every window of tier 1 of 3",
        ),
    ],
)
def test_forward_moves_wait_while_any_tier_burns_over_both_windows_or_is_unread(
    burns: dict[str, float | str | None], holds: bool, tiers: list[bool | None], reason: str
) -> None:
    got = budget(burns)
    assert got.holds is holds
    assert got.reason.startswith("error_budget: ")
    assert reason in got.reason
    assert [t.burns for t in got.tiers or []] == tiers


def test_the_evidence_keeps_every_tier_its_windows_and_each_window_read_once() -> None:
    got = budget(QUIET | {"6h": 7.0, "30m": 9.5, "3d": "the last reading is 300 s old"})
    assert got.tiers == [
        TierBurn(above=14.4, windows=["1h", "5m"], burns=False),
        TierBurn(above=6, windows=["6h", "30m"], burns=True),
        TierBurn(above=1, windows=["3d", "6h"], burns=None),
    ]
    assert got.above == 6, "the threshold of the tier that burns"
    assert got.windows == {"5m": 0.5, "30m": 9.5, "1h": 0.5, "6h": 7.0, "3d": None}
    assert got.problems == {"3d": "the last reading is 300 s old"}
    wire = GateEvidence(error_budget=got).wire()
    assert GateEvidence.tolerant(wire).error_budget == got, "what is published reads back"


@pytest.mark.parametrize(
    ("burn", "burns", "holds", "reason"),
    [
        # One tier (either spelling) is told as plans of one tier always were.
        (
            {"above": 14.4, "windows": ["5m", "1h"]},
            {"5m": 20.0, "1h": 15.0},
            True,
            "error_budget: the burn rate is above 14.4 over every window (5m 20.00, 1h 15.00)",
        ),
        (
            {"tiers": [{"above": 14.4, "long": "1h"}]},
            {"5m": 20.0, "1h": 2.0},
            False,
            "error_budget: the burn rate is not above 14.4 over every window (1h 2.00, 5m 20.00)",
        ),
        (
            {"tiers": [{"above": 14.4, "long": "1h"}]},
            {"5m": 20.0},
            True,
            "error_budget: the burn rate over 1h cannot be read: not taken as healthy",
        ),
    ],
)
def test_one_tier_reads_without_tiers(
    burn: dict[str, Any], burns: dict[str, float | str], holds: bool, reason: str
) -> None:
    got = budget(dict(burns), plan(**burn))
    assert (got.holds, got.reason) == (holds, reason)
    assert got.above == 14.4
