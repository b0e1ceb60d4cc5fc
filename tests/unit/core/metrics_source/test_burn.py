"""The plan's burn rate in tiers: its three spellings, the 1/12 rule, and what it refuses."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from controller.core.metrics_source import (
    WORKBOOK_TIERS,
    BurnRate,
    Tier,
    default_short,
    window_name,
)

QUERY = "sum(rate(errors_total[{{window}}])) / sum(rate(requests_total[{{window}}])) / 0.001"
M, H, D = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
WORKBOOK = (Tier(14.4, (H, 5 * M)), Tier(6, (6 * H, 30 * M)), Tier(1, (3 * D, 6 * H)))


def burn(**written: Any) -> BurnRate:
    return BurnRate.model_validate({"query": QUERY, **written})


@pytest.mark.parametrize(
    ("written", "tiers"),
    [
        # The form plans wrote first: one tier over every window, shortest first.
        ({"above": 14.4, "windows": ["1h", "5m"]}, (Tier(14.4, (5 * M, H)),)),
        ({"above": 2, "windows": ["10s"]}, (Tier(2, (timedelta(seconds=10),)),)),
        ({"above": 1, "windows": ["1m", "5m", "1h", "1d"]}, (Tier(1, (M, 5 * M, H, D)),)),
        # Tiers: long, then short, in the plan's order.
        ({"tiers": [{"above": 14.4, "long": "1h", "short": "5m"}]}, (Tier(14.4, (H, 5 * M)),)),
        ({"tiers": [{"above": 3, "long": "2h", "short": "1h"}]}, (Tier(3, (2 * H, H)),)),
        (
            {"tiers": [{"above": 1, "long": "3d"}, {"above": 14.4, "long": "1h"}]},
            (Tier(1, (3 * D, 6 * H)), Tier(14.4, (H, 5 * M))),
        ),
        # Short left out: 1/12 of long; the workbook's tiers spelled out, or left out.
        (
            {
                "tiers": [
                    {"above": a, "long": long} for a, long in ((14.4, "1h"), (6, "6h"), (1, "3d"))
                ]
            },
            WORKBOOK,
        ),
        ({}, WORKBOOK),
    ],
)
def test_each_spelling_reads_as_its_tiers(written: dict[str, Any], tiers: tuple[Tier, ...]) -> None:
    assert burn(**written).tier_list() == tiers


def test_the_workbook_tiers_follow_the_one_twelfth_rule() -> None:
    assert tuple(t.tier() for t in WORKBOOK_TIERS) == WORKBOOK
    assert all(t.short_window == default_short(t.long) for t in WORKBOOK_TIERS)


@pytest.mark.parametrize(
    ("long", "short"),
    [
        (H, 5 * M),
        (6 * H, 30 * M),
        (3 * D, 6 * H),
        (30 * D, 60 * H),
        (2 * M, timedelta(seconds=10)),  # the least a window may be
        (timedelta(seconds=150), timedelta(seconds=12)),  # 12.5 s: whole seconds, down
        (timedelta(seconds=130, milliseconds=500), timedelta(seconds=10)),
    ],
)
def test_a_short_window_left_out_is_a_twelfth_of_the_long_in_whole_seconds(
    long: timedelta, short: timedelta
) -> None:
    assert default_short(long) == short
    written = burn(tiers=[{"above": 2, "long": long.total_seconds()}])
    assert written.tier_list() == (Tier(2, (long, short)),)


def test_windows_shared_by_tiers_are_read_once_shortest_first() -> None:
    assert list(burn().named_windows()) == ["5m", "30m", "1h", "6h", "3d"]
    shared = burn(tiers=[{"above": 14.4, "long": "1h"}, {"above": 6, "long": "6h", "short": "1h"}])
    assert list(shared.named_windows()) == ["5m", "1h", "6h"]


@pytest.mark.parametrize(
    "written",
    [
        {},
        {"above": 14.4, "windows": ["5m", "1h"]},
        {"tiers": [{"above": 14.4, "long": "1h"}, {"above": 6, "long": "6h", "short": "20m"}]},
    ],
)
def test_a_written_burn_rate_reads_back_the_same(written: dict[str, Any]) -> None:
    first = burn(**written)
    again = BurnRate.model_validate_json(first.model_dump_json())
    assert again.tier_list() == first.tier_list()


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ({"tiers": []}, "tiers\n  List should have at least 1 item"),
        ({"tiers": [{"above": n, "long": f"{n}h"} for n in range(1, 6)]}, "at most 4 items"),
        ({"tiers": [{"above": 2, "long": "1m"}]}, "1/12 of long, 5s, under the 10s"),
        ({"tiers": [{"above": 2, "long": "1h", "short": "1h"}]}, "short must be shorter"),
        ({"tiers": [{"above": 2, "long": "1h", "short": "2h"}]}, "short must be shorter"),
        ({"tiers": [{"above": 2, "long": "31d"}]}, "tiers.0.long\n  Input should be less"),
        ({"tiers": [{"above": 2, "long": "1h", "short": "5s"}]}, "tiers.0.short\n  Input"),
        ({"tiers": [{"above": 0, "long": "1h"}]}, "tiers.0.above\n  Input should be greater"),
        ({"tiers": [{"above": 2e6, "long": "1h"}]}, "tiers.0.above\n  Input should be less"),
        ({"tiers": [{"long": "1h"}]}, "tiers.0.above\n  Field required"),
        ({"tiers": [{"above": 2, "long": "1h", "shrt": "5m"}]}, "tiers.0.shrt\n  Extra inputs"),
        (
            {"tiers": [{"above": 2, "long": "1h"}, {"above": 2, "long": "1h", "short": "5m"}]},
            "burn-rate tiers must differ",
        ),
        ({"above": 2}, "above and windows go together"),
        ({"windows": ["5m"]}, "above and windows go together"),
        (
            {"above": 2, "windows": ["5m"], "tiers": [{"above": 2, "long": "1h"}]},
            "write tiers, or above and windows (one tier), not both",
        ),
        ({"above": 2, "windows": ["5m", "5m"]}, "burn-rate windows must differ"),
        ({"tiers": "workbook"}, "tiers\n  Input should be a valid list"),
    ],
)
def test_a_burn_rate_that_cannot_work_is_refused_saying_why(
    written: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        burn(**written)
    assert problem in str(refused.value)


@pytest.mark.parametrize(
    ("seconds", "name"),
    [(300, "5m"), (3600, "1h"), (259200, "3d"), (90, "90s"), (5400, "90m"), (0, "0s")],
)
def test_a_window_is_named_in_its_largest_whole_unit(seconds: int, name: str) -> None:
    assert window_name(timedelta(seconds=seconds)) == name
