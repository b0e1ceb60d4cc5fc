"""The joins a restart's replay completes with a half read fresh are flushed, whatever follows.

After a kill, the logs topic's claim reads its records again for their joins only. Where
the spans topic was read first, each replayed evaluation finds its request span already
read fresh, so the join may not have been counted and is handed on. No fresh record may
follow the replay, on any partition of either topic, to carry it: the requests of every
evaluation that waited at the kill would never be counted. So the partition whose replay
ends holds it as work of no records at the counted offset, which the flush script applies
once (its id window, not its offset, tells a copy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controller.core.stats import PartitionDelta
from controller.core.telemetry import Bounds, Logs, Spans, Translator
from controller.daemon.ingest import OtlpFolder
from controller.daemon.ingest.batches import Work, refold
from controller.daemon.ingest.held_work import HeldWork
from controller.daemon.ingest.partitions import Owned
from controller.ports import Record
from tests.unit.core.telemetry.builders import (
    OTHER_TRACE,
    ROOT,
    T0_MS,
    evaluation_attributes,
    lookup,
    record,
    rules,
    span,
)

LOG, SPAN, LOG2, SPAN2 = b"log", b"span", b"log2", b"span2"
EXPORTS: dict[bytes, Logs | Spans] = {
    LOG: Logs([record(evaluation_attributes(), span_id=ROOT)]),
    SPAN: Spans([span(ROOT, status=2)]),
    # Another request, of another unit and trace
    LOG2: Logs([record(evaluation_attributes(unit="u2"), trace=OTHER_TRACE, span_id=ROOT)]),
    SPAN2: Spans([span(ROOT, trace=OTHER_TRACE, status=2)]),
}


@dataclass
class _Record:
    value: bytes | None
    offset: int
    partition: int = 0
    topic: str = "otlp"
    timestamp: int = T0_MS
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()


def _folder(translator: Translator) -> OtlpFolder:
    def decode(raw: bytes, _bounds: Bounds) -> Logs | Spans:
        return EXPORTS[raw]

    return OtlpFolder(topic="otlp", decode=decode, translator=translator)  # type: ignore[arg-type]


class _Current:
    """Every claim is current (no rebalance here)."""

    @staticmethod
    def current(_partition: int, _owned: Owned) -> bool:
        return True


def _requests(delta: PartitionDelta) -> int:
    return sum(cell.req for cell in delta.cells.values())


def _taken(held: HeldWork) -> list[Work]:
    return held.take(_Current())  # type: ignore[arg-type]


def _restarted() -> tuple[Translator, OtlpFolder, HeldWork, Owned]:
    """A restart: the span read fresh first, then the logs claim, whose log record at
    offset 10 was counted (the counted offset is 11, the rejoin offset 10)."""
    translator = Translator(lookup(rules()), join_window_ms=30_000)
    spans, logs = _folder(translator), _folder(translator)
    fresh = spans.fold(0, [_Record(SPAN, 0)], [])
    assert _requests(fresh) == 0  # no evaluation waits for it yet
    return translator, logs, HeldWork(logs), Owned(epoch=2, offset=11, rejoin=10)


def test_a_replay_that_ends_a_partition_holds_its_joins_as_work_at_the_counted_offset() -> None:
    _, _, held, owned = _restarted()
    replayed: list[Record] = [_Record(LOG, 10)]
    assert held.read_again(0, owned, replayed) == []  # nothing fresh to fold
    (work,) = _taken(held)
    assert (work.records, work.delta.next_offset, work.delta.rejoin) == ([], 11, 10)
    assert _requests(work.delta) == 1  # the request the kill left waiting
    assert [type(e).__name__ for e in work.joins] == ["RequestIn"]


def test_a_fresh_record_after_the_replay_carries_its_joins_as_before() -> None:
    _, _, held, owned = _restarted()
    records: list[Record] = [_Record(LOG, 10), _Record(SPAN, 11)]
    rest = held.read_again(0, owned, records)
    assert [r.offset for r in rest] == [11]
    assert not held  # the fold of the fresh record takes the join
    held.fold(0, rest, owned, [])
    (work,) = _taken(held)
    assert (work.joins, _requests(work.delta)) == ([], 1)


def test_joins_counted_before_are_folded_again_without_them_and_records_kept() -> None:
    translator, folder, held, owned = _restarted()
    held.read_again(0, owned, [_Record(LOG, 10)])
    fresh: list[Record] = [_Record(SPAN, 11)]
    held.fold(0, fresh, owned, [])  # a fetch folded on while the joins wait to be flushed
    (work,) = _taken(held)
    assert (len(work.records), work.delta.next_offset) == (1, 12)
    (join,) = work.joins
    again = refold(folder, work, frozenset({join.id}))
    assert (again.next_offset, _requests(again)) == (12, 0)
    assert refold(folder, work, frozenset()).cells == work.delta.cells
    assert translator.take_ready() == []


def test_a_replay_read_in_two_fetches_holds_the_joins_of_both_as_one_work() -> None:
    translator = Translator(lookup(rules()), join_window_ms=30_000)
    spans, logs = _folder(translator), _folder(translator)
    fresh = spans.fold(0, [_Record(SPAN, 0), _Record(SPAN2, 1)], [])
    assert _requests(fresh) == 0
    held, owned = HeldWork(logs), Owned(epoch=2, offset=12, rejoin=10)
    assert held.read_again(0, owned, [_Record(LOG, 10)]) == []
    assert held.read_again(0, owned, [_Record(LOG2, 11)]) == []  # the replay goes on
    (work,) = _taken(held)
    assert (work.records, work.delta.next_offset, work.delta.rejoin) == ([], 12, 10)
    assert _requests(work.delta) == 2  # both requests the kill left waiting
    assert len(work.joins) == 2
    assert len({join.id for join in work.joins}) == 2
