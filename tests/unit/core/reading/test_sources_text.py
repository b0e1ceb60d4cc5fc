"""What a gate read from Prometheus, in lines: every part read on its own, odd ones left out."""

from __future__ import annotations

import pytest

from controller.core.reading.sources_text import budget_text, source_lines
from controller.core.wire import gate_of, read_evidence

READ = {
    "at": "2026-11-22T12:00:03+00:00",
    "queries": {"count": {"treatment": 'sum(r{f="checkout",v="on",code="500"})'}},
    "arms": {"treatment": {"requests": 1200, "errors": 30}, "control": {"requests": 9800}},
    "request_share": 0.109,
    "problems": ["control: total: the value is NaN"],
}


def test_a_reading_is_shown_with_its_numbers_and_queries() -> None:
    sources = {
        "source": "prometheus at http://p:9090",
        "expected_share": 0.1,
        "reads": {"error_rate": READ},
    }
    lines = source_lines(gate_of(read_evidence("gate", {"sources": sources})))
    assert lines == [
        "read from prometheus at http://p:9090:",
        "  error_rate: read at 2026-11-22T12:00:03+00:00",
        "    treatment: 1,200 requests, 30 errors",
        "    control: 9,800 requests",
        "    request share of treatment 10.9% (expected 10%; shown, never tested: requests"
        " cluster by unit)",
        "    unusable: control: total: the value is NaN",
        '    query count (treatment): sum(r{f="checkout",v="on",code="500"})',
    ]


@pytest.mark.parametrize(
    "evidence",
    [None, [], {"sources": 3}, {"sources": {"reads": "x"}}, {"arms": {}}],
)
def test_evidence_without_readings_shows_nothing(evidence: object) -> None:
    assert source_lines(gate_of(read_evidence("gate", evidence))) == []


def test_odd_parts_are_left_out() -> None:
    odd = {"at": 5, "arms": {"treatment": "many", "control": {"requests": True}}, "queries": [1]}
    lines = source_lines(
        gate_of(read_evidence("gate", {"sources": {"reads": {"error_rate": odd, "x": 7}}}))
    )
    assert lines == [
        "read from a metric source:",
        "  error_rate: read at ?",
        "    treatment: -",
        "    control: nothing counted",
    ]


@pytest.mark.parametrize(
    ("budget", "text"),
    [
        (
            {"holds": True, "reason": "r", "above": 14.4, "windows": {"5m": 20.06, "1h": 16}},
            "burn rate 5m 20.1, 1h 16.0 (holds above 14.4 over every window): forward moves wait",
        ),
        (
            {"holds": False, "reason": "r", "above": 14.4, "windows": {"5m": 0.0, "1h": 3.2}},
            "burn rate 5m 0.0, 1h 3.2 (holds above 14.4 over every window): forward moves may"
            " go on",
        ),
        (
            {"holds": True, "reason": "r", "above": 2, "windows": {"5m": None, "1h": 0.5}},
            "burn rate 5m unread, 1h 0.5 (holds above 2 over every window): forward moves wait",
        ),
        (
            {
                "holds": True,
                "reason": "r",
                "above": 6,
                "windows": {"5m": 0.5, "30m": 9.5, "1h": 0.5, "6h": 7.0, "3d": None},
                "tiers": [
                    {"above": 14.4, "windows": ["1h", "5m"], "burns": False},
                    {"above": 6, "windows": ["6h", "30m"], "burns": True},
                    {"above": 1, "windows": ["3d", "6h"], "burns": None},
                ],
            },
            "burn rate 14.4 over 1h 0.5 and 5m 0.5 or 6 over 6h 7.0 and 30m 9.5 (burns) or 1"
            " over 3d unread and 6h 7.0 (unread): forward moves wait",
        ),
        # Damaged parts from the network: each read on its own, none trusted.
        ({"holds": "yes", "windows": "x"}, "burn rate ?: unknown"),
        ({"holds": False, "above": True, "windows": {"5m": "a"}}, "burn rate ?: forward moves"),
    ],
)
def test_the_error_budget_is_one_line_with_each_windows_burn(
    budget: dict[str, object], text: str
) -> None:
    shown = budget_text(gate_of(read_evidence("gate", {"error_budget": budget})))
    assert shown.startswith(text)
    assert budget_text(gate_of(read_evidence("gate", {}))) == ""
