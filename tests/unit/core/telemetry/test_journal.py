"""The journal's entries: an export's items and time, read back as they were taken."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from controller.core.telemetry import (
    NO_ATTRIBUTES,
    LogRecord,
    Logs,
    Refusal,
    Span,
    SpanEvent,
    Spans,
    Translated,
    journal_batch,
    journal_entry,
    second_look,
    within,
)
from controller.core.wire import ExposureIn

SPAN = Span(
    trace_id="ab" * 16,
    span_id="cd" * 8,
    parent_span_id="",
    name="GET /checkout",
    kind=2,
    start_ns=1_000,
    end_ns=2_000,
    status_code=2,
    attributes={"http.response.status_code": 500, "ok": False, "ratio": 0.5},
    events=(SpanEvent("feature_flag.evaluation", 1_500, {"feature_flag.key": "f"}),),
    resource={"service.name": "checkout"},
)
RECORD = LogRecord(
    trace_id="ab" * 16,
    span_id="cd" * 8,
    time_ns=1_500,
    event_name="feature_flag.evaluation",
    attributes={"feature_flag.key": "f", "feature_flag.version": "3"},
    resource={"service.name": "checkout"},
    severity=9,
)


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        (Spans([SPAN, SPAN], [Refusal(2, "malformed", "x")]), Spans([SPAN, SPAN])),
        (Logs([RECORD], [Refusal(0, "bad_time", "x")]), Logs([RECORD])),
    ],
    ids=["spans", "log records"],
)
def test_an_entry_reads_back_its_items_and_time_without_the_refused(
    batch: Spans | Logs, expected: Spans | Logs
) -> None:
    raw = journal_entry(batch, 1_234)
    assert raw is not None
    assert journal_batch(raw) == (1_234, expected)


def test_read_only_attributes_are_journaled_as_the_mappings_they_are() -> None:
    # The decoder gives items with no attributes one shared read-only mapping (a mapping
    # proxy), and a crash span's event attributes may be one too: msgpack has no such type.
    bare = Span(
        trace_id="ab" * 16,
        span_id="ef" * 8,
        parent_span_id="cd" * 8,
        name="worker",
        kind=1,
        start_ns=1_000,
        end_ns=2_000,
        status_code=0,
        attributes=NO_ATTRIBUTES,
        events=(SpanEvent("exception", 1_500, MappingProxyType({"exception.type": "E"})),),
        resource=NO_ATTRIBUTES,
    )
    record = LogRecord("", "", 1_500, "x", NO_ATTRIBUTES, NO_ATTRIBUTES, 21)
    for batch in (Spans([bare]), Logs([record])):
        raw = journal_entry(batch, 7)
        assert raw is not None
        assert journal_batch(raw) == (7, batch)


@pytest.mark.parametrize("batch", [Spans(), Logs(), Spans([], [Refusal(-1, "empty", "")])])
def test_an_export_with_no_item_is_not_journaled(batch: Spans | Logs) -> None:
    assert journal_entry(batch, 1) is None


@pytest.mark.parametrize("raw", [b"", b"\x00", b"not msgpack", b"\x91\xa1x"])
def test_bytes_that_are_no_entry_are_skipped(raw: bytes) -> None:
    assert journal_batch(raw) is None


@pytest.mark.parametrize(
    ("times", "now", "kept"),
    [
        ([5, 1, 3], 10, [1, 3, 5]),  # oldest first, whatever the journal's order
        ([1, 2, 3], 32, [3]),  # a window (30) old or older: expired
        ([40], 32, [40]),  # ahead of this clock: kept
        ([], 10, []),
    ],
)
def test_the_entries_of_the_last_window_are_read_oldest_first(
    times: list[int], now: int, kept: list[int]
) -> None:
    entries: list[tuple[int, Spans | Logs]] = [(t, Spans()) for t in times]
    assert [t for t, _ in within(entries, now, 30)] == kept


def test_a_second_look_keeps_each_event_and_refusal_once_at_its_index_in_the_batch() -> None:
    exposure = ExposureIn(v=1, id="x1", ts=1, flag="f", unit="u", arm="treatment", flag_version=1)
    again = ExposureIn(v=1, id="x2", ts=1, flag="g", unit="u", arm="treatment", flag_version=1)
    # item 3 holds an evaluation of f (refused) and one of g; item 5 one of h
    first = Translated(events=[exposure], refused=[Refusal(3, "unknown_variant", "f: purple")])
    first.not_published("g", 3, 10)
    first.not_published("h", 5, 12)
    # items 3 and 5 looked at again: g now known, f refused again, h still unknown
    second = Translated(
        events=[exposure, again],
        refused=[Refusal(0, "unknown_variant", "f: purple"), Refusal(1, "bad_version", "h: v")],
    )
    second.not_published("h", 1, 12)
    merged = second_look(first, second, [3, 5])
    assert [e.id for e in merged.events] == ["x1", "x2"]
    assert merged.refused == [
        Refusal(3, "unknown_variant", "f: purple"),
        Refusal(5, "bad_version", "h: v"),
    ]
    assert (merged.no_rollout, merged.unknown, list(merged.unknown_items)) == (1, {"h": 12}, [5])
