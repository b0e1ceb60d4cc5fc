"""What a gate read from Prometheus, in lines: every part read on its own, odd ones left out."""

from __future__ import annotations

import pytest

from controller.core.reading.sources_text import source_lines
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
