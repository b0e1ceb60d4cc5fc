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
    journal_batch,
    journal_entry,
    within,
)

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
