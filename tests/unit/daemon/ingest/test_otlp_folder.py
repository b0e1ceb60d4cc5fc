"""Folding the Collector's OTLP records: every counted evaluation in the delta, each refusal
a dead letter with its reason, the siblings of a bad item counted, no record the end of ingest.

The decoder is a table here (decoding is proved with the decoders); what is proved is
what the folder makes of what a decoder and the translator answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec
import pytest

from controller.core.stats import PartitionDelta
from controller.core.telemetry import (
    WHOLE_BODY,
    Bounds,
    FlagRules,
    Refusal,
    Span,
    SpanEvent,
    Spans,
    Translator,
)
from controller.daemon.ingest import OtlpFolder
from controller.daemon.ingest.otlp import ITEM_HEADER
from controller.ports import DeadLetter, Record

FLAG = "checkout"
RULES = {FLAG: FlagRules(flag=FLAG, version=3)}
T0_NS = 1_763_780_000_000_000_000


@dataclass
class StampedRecord:
    """A record as aiokafka hands it over, with its timestamp (ms)."""

    value: bytes | None
    offset: int
    timestamp: int = T0_NS // 1_000_000
    topic: str = "otlp_spans"
    partition: int = 2
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()


def server_span(i: int, *, flag: str = FLAG, variant: str = "treatment", trace: int = 0) -> Span:
    """A SERVER span of its own trace with one evaluation event on it."""
    attributes = {
        "feature_flag.key": flag,
        "feature_flag.result.variant": variant,
        "feature_flag.context.id": f"user-{i}",
    }
    start = T0_NS + i * 1_000_000
    return Span(
        trace_id=f"{trace or i + 1:032x}",
        span_id=f"{i + 1:016x}",
        parent_span_id="",
        name="GET /cart",
        kind=2,
        start_ns=start,
        end_ns=start + 25_000_000,
        status_code=0,
        attributes={"http.response.status_code": 500 if i % 4 == 0 else 200},
        events=(SpanEvent("feature_flag.evaluation", start + 1000, attributes),),
        resource={},
    )


def folder(exports: Mapping[bytes, Spans | Refusal | Exception]) -> OtlpFolder:
    def decode(raw: bytes, _bounds: Bounds) -> Spans | Refusal:
        found = exports[raw]
        if isinstance(found, Exception):
            raise found
        return found

    return OtlpFolder(
        topic="otlp_spans",
        decode=decode,
        translator=Translator(RULES.get),
        max_record_bytes=1000,
    )


def fold(
    exports: Mapping[bytes, Spans | Refusal | Exception],
    values: list[bytes | None],
    *,
    known: frozenset[str] = frozenset(),
) -> tuple[OtlpFolder, PartitionDelta, list[DeadLetter]]:
    records: list[Record] = [StampedRecord(v, 10 + i) for i, v in enumerate(values)]
    rejected: list[DeadLetter] = []
    made = folder(exports)
    delta = made.fold(2, records, rejected, known=known)
    return made, delta, rejected


def test_each_evaluation_on_a_server_span_is_an_exposure_and_a_request() -> None:
    spans = Spans([server_span(i) for i in range(8)])
    _, delta, rejected = fold({b"a": spans}, [b"a"])
    assert rejected == []
    assert delta.partition == 2
    assert delta.next_offset == 11
    cells = delta.cells
    treatment = cells[(FLAG, 3, "treatment")]
    assert (treatment.exp, treatment.req, treatment.err, treatment.lat_n) == (8, 8, 2, 8)
    assert treatment.lat_sum == pytest.approx(8 * 25.0)
    assert len(treatment.units) == 8


def test_a_bad_evaluation_is_dead_lettered_and_its_siblings_counted() -> None:
    reason = "unknown_variant"
    spans = Spans([server_span(0), server_span(91, variant="v2"), server_span(2)])
    _, delta, rejected = fold({b"a": spans}, [b"a"])
    assert [(d.reason, d.record.offset, d.record.value) for d in rejected] == [(reason, 10, b"a")]
    assert dict(rejected[0].record.headers)[ITEM_HEADER] == b"1"
    assert rejected[0].detail.startswith("item 1: ")
    assert dict(delta.rejects) == {reason: 1}
    assert delta.events == 4


def test_an_evaluation_of_a_flag_no_rollout_published_is_ignored_not_dead_lettered() -> None:
    ignored: list[int] = []
    made = OtlpFolder(
        topic="otlp_spans",
        decode=lambda _raw, _bounds: Spans([server_span(0), server_span(90, flag="nobody")]),
        translator=Translator(RULES.get),
        ignored=ignored.append,
    )
    rejected: list[DeadLetter] = []
    delta = made.fold(2, [StampedRecord(b"a", 10)], rejected)
    assert (rejected, dict(delta.rejects), delta.events) == ([], {}, 2)
    assert (ignored, made.tally.no_rollout) == ([1], 1)


def test_items_the_decoder_refused_are_dead_lettered_the_record_carried_once() -> None:
    refused = [Refusal(1, "hostile_attribute", "deep"), Refusal(4, "oversize", "129 attributes")]
    spans = Spans([server_span(0), server_span(2)], refused)
    _, delta, rejected = fold({b"a": spans}, [b"a"])
    assert [(d.reason, d.record.value) for d in rejected] == [
        ("hostile_attribute", b"a"),
        ("oversize", None),
    ]
    assert [dict(d.record.headers)[ITEM_HEADER] for d in rejected] == [b"1", b"4"]
    assert delta.events == 4


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"garbage", "malformed"),
        (None, "empty"),
        (b"x" * 1001, "oversize"),
        (b"raises", "malformed"),
    ],
)
def test_a_record_that_is_no_export_is_one_letter_and_the_next_records_count(
    value: bytes | None, reason: str
) -> None:
    exports: dict[bytes, Spans | Refusal | Exception] = {
        b"garbage": Refusal(WHOLE_BODY, "malformed", "not an export"),
        b"raises": RecursionError("maximum recursion depth exceeded"),
        b"good": Spans([server_span(i) for i in range(3)]),
    }
    _, delta, rejected = fold(exports, [b"good", value, b"good"])
    assert [(d.reason, d.record.offset, d.record.value) for d in rejected] == [(reason, 11, value)]
    assert ITEM_HEADER not in dict(rejected[0].record.headers)
    assert dict(delta.rejects) == {reason: 1}
    assert delta.events == 6
    assert delta.seen.repeats == 6


def test_the_same_spans_again_count_once_and_ids_counted_before_not_at_all() -> None:
    spans = Spans([server_span(i) for i in range(5)])
    _, first, _ = fold({b"a": spans}, [b"a", b"a"])
    assert first.events == 10
    assert first.seen.repeats == 10
    counted = frozenset(first.seen.recorded())
    assert len(counted) == 10
    assert all(i.startswith("otlp-") for i in counted)
    _, again, _ = fold({b"a": spans}, [b"a"], known=counted)
    assert again.events == 0
    assert again.seen.recorded() == []


def test_an_evaluation_near_a_version_change_is_counted_apart_not_dead_lettered() -> None:
    change_ms = T0_NS // 1_000_000
    rules = {FLAG: FlagRules(flag=FLAG, version=4, timeline=((3, 0), (4, change_ms)))}
    made = OtlpFolder(
        topic="otlp_spans",
        decode=lambda _raw, _bounds: Spans([server_span(0)]),
        translator=Translator(rules.get),
    )
    rejected: list[DeadLetter] = []
    delta = made.fold(0, [StampedRecord(b"a", 0)], rejected)
    assert rejected == []
    assert delta.events == 0
    assert made.tally.guarded == 1
    assert made.tally.refused == {}


def test_the_tally_counts_records_items_and_request_level_units() -> None:
    anonymous = server_span(0)
    event = anonymous.events[0]
    attributes = {k: v for k, v in event.attributes.items() if k != "feature_flag.context.id"}
    unnamed = msgspec.structs.replace(
        anonymous, events=(SpanEvent(event.name, event.time_ns, attributes),)
    )
    made, delta, _ = fold({b"a": Spans([unnamed, server_span(1)])}, [b"a", b"a"])
    assert (made.tally.records, made.tally.items) == (2, 4)
    assert made.tally.request_level == 2  # one per translation: the second is a copy
    units = delta.cells[(FLAG, 3, "treatment")].units
    assert f"trace:{unnamed.trace_id}" in units
