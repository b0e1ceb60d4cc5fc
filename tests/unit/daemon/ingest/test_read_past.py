"""A partition's next offset is where the consumer's fetch left it, past the markers it skipped.

A transaction's commit or abort marker takes an offset no consumer is handed, and the
records of an aborted transaction are not handed out either: counted through its last
record, a log that ends with one would stay behind the broker's log end for good. The
held work's next offset moves up to the consumer's position, in the flush that stores the
counts, whichever path folded the records (native or Python), and however the flush ends
(refolded without events counted before, or taken record by record after a refusal).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import pytest

from controller.core.common.errors import DuplicateEvents, FlushRefused
from controller.core.machine.log_gaps import LogIdentity
from controller.core.stats.folding import PartitionDelta
from controller.daemon.ingest.batches import Folder, Work, refold
from controller.daemon.ingest.flushing import Flusher
from controller.daemon.ingest.held_work import HeldWork
from controller.daemon.ingest.partitions import Owned, Partitions
from controller.daemon.ingest.progress import IngestStats
from controller.daemon.ingest.read_past import Past, read_past
from controller.daemon.metrics import Metrics
from controller.ports import Claim, DeadLetter, FlushOutcome, Record
from tests.support.reference import StubRecord, encode, make_event
from tests.unit.daemon.ingest.test_native_fold import view
from tests.unit.daemon.ingest.test_partitions import Source

T = TypeVar("T")
MAX_BYTES = 65_536


@pytest.mark.parametrize(
    ("at", "to", "served", "past"),
    [
        # the fetch left the partition where its records ended: nothing past them
        (10, 10, True, Past.NOTHING),
        (10, 10, False, Past.NOTHING),
        # position unknown (a seek since, a reset pending): nothing is taken
        (10, None, True, Past.NOTHING),
        (None, None, False, Past.NOTHING),
        # a position behind what was read (a seek back to replay joins): never a move back
        (10, 7, False, Past.NOTHING),
        # a commit marker after the records the fetch served: that fetch's reading
        (10, 11, True, Past.TAKEN),
        # an aborted transaction after them, its records and its marker
        (10, 25, True, Past.TAKEN),
        # a fetch of markers and aborted records alone: maybe a reset, so checked first
        (10, 11, False, Past.CHECKED),
        (10, 500, False, Past.CHECKED),
        # never counted nor read: where the first fetch left it is checked as a first record
        (None, 4, False, Past.CHECKED),
        # never counted, at the log's very start: nothing to store
        (None, 0, False, Past.NOTHING),
    ],
)
def test_how_a_fetchs_position_is_taken(
    at: int | None, to: int | None, served: bool, past: Past
) -> None:
    assert read_past(at, to, served=served) is past


def events(offsets: Sequence[int], seed: int = 3) -> list[Record]:
    rng = random.Random(seed)
    return [StubRecord(encode(make_event(rng, o, flags=2, units=20)), o) for o in offsets]


@pytest.fixture(params=["python", "native"])
def folder(request: pytest.FixtureRequest) -> Folder:
    if request.param == "native":
        request.getfixturevalue("fold_native")
    return Folder(max_event_bytes=MAX_BYTES, native=request.param == "native")


def held_parts(owned: Owned) -> Partitions:
    parts = Partitions(metrics=Metrics(), stall_after=60)
    parts.owned[0] = owned
    return parts


def test_the_position_past_the_records_is_flushed_with_their_counts(folder: Folder) -> None:
    held, owned = HeldWork(folder), Owned(epoch=1, offset=0)
    held.fold(0, events(range(10)), owned, [])
    held.read_past(0, owned, 11)  # the commit marker at 10
    (work,) = held.take(held_parts(owned))
    assert work.delta.next_offset == 11
    assert work.delta.events == 10
    assert len(work.records) == 10
    # and the next fetch, from the consumer's position, follows it: no look at the log
    assert held.follows(0, owned, 11)
    assert held.fetched_to(0, owned) == 11
    assert held.fetched_to(0, Owned(epoch=2, offset=0)) is None


def test_both_folds_give_the_same_delta_past_the_markers() -> None:
    views = []
    for native in (False, True):
        held, owned = HeldWork(Folder(max_event_bytes=MAX_BYTES, native=native)), Owned(1, 0)
        held.fold(0, events(range(6)), owned, [])
        held.read_past(0, owned, 7)
        held.fold(0, events(range(7, 12), seed=4), owned, [])
        held.read_past(0, owned, 20)  # an aborted transaction, 12-18, and its marker
        (work,) = held.take(held_parts(owned))
        views.append((work.delta.next_offset, view(work.delta)))
    assert views[0] == views[1]
    assert views[0][0] == 20


def test_markers_alone_are_held_as_work_that_only_moves_the_offset(folder: Folder) -> None:
    held, owned = HeldWork(folder), Owned(epoch=1, offset=10)
    held.read_past(0, owned, 13)  # an empty aborted transaction's marker, then a commit's
    (work,) = held.take(held_parts(owned))
    assert (work.delta.next_offset, work.delta.events, work.records) == (13, 0, [])


def test_records_after_work_of_markers_alone_begin_a_delta_of_their_own(folder: Folder) -> None:
    held, owned = HeldWork(folder), Owned(epoch=1, offset=10)
    held.read_past(0, owned, 12)
    held.fold(0, events(range(12, 15)), owned, [])
    (work,) = held.take(held_parts(owned))
    assert (work.delta.next_offset, work.delta.events) == (15, 3)
    assert [r.offset for r in work.records] == [12, 13, 14]


def test_a_position_read_under_a_claim_given_up_is_not_flushed(folder: Folder) -> None:
    held, old, new = HeldWork(folder), Owned(epoch=1, offset=0), Owned(epoch=2, offset=0)
    held.read_past(0, old, 5)
    assert held.take(held_parts(new)) == []


def test_a_refold_keeps_the_offset_past_the_markers(folder: Folder) -> None:
    held, owned = HeldWork(folder), Owned(epoch=1, offset=0)
    held.fold(0, events(range(4)), owned, [])
    held.read_past(0, owned, 6)
    (work,) = held.take(held_parts(owned))
    counted_before = frozenset(sorted(work.delta.seen.ids)[:2])
    again = refold(folder, work, counted_before)
    assert again.next_offset == 6
    assert again.events == 2


class Flushes:
    """A store that refuses a flush of more than one event (or names ids counted before,
    once), and records the offsets of those it applies."""

    def __init__(self, *, refuse_many: bool = False, counted: frozenset[str] = frozenset()):
        self.refuse_many, self.counted = refuse_many, counted
        self.applied: list[tuple[int | None, int, int]] = []

    async def claim(self, partition: int) -> Claim:
        raise AssertionError("claimed by the test")

    async def flush(
        self,
        delta: PartitionDelta,
        *,
        epoch: int,
        expected_offset: int | None,
        log: LogIdentity | None = None,
    ) -> FlushOutcome:
        if self.refuse_many and delta.events > 1:
            raise FlushRefused("one cell refused", per_cell=True)
        named = self.counted & delta.seen.ids
        if named:
            self.counted = frozenset()
            raise DuplicateEvents("counted before", ids=named)
        self.applied.append((expected_offset, delta.next_offset, delta.events))
        return FlushOutcome.APPLIED


class NoLetters:
    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        raise AssertionError(f"nothing is dead-lettered here: {letters}")


async def once(call: Callable[[], Awaitable[T]], what: str, **_: Any) -> T | None:
    return await call()


async def flushed(store: Flushes, folder: Folder, work: Work, parts: Partitions) -> None:
    flusher = Flusher(
        source=Source({0: 100}),
        store=store,
        dead_letters=NoLetters(),
        parts=parts,
        folder=folder,
        retry=once,
        stats=IngestStats(),
        metrics=Metrics(),
        alarm=None,
    )
    flusher.start([work])
    await flusher.settle()


async def test_a_refused_flush_taken_record_by_record_still_stores_the_offset_past_the_markers(
    folder: Folder,
) -> None:
    held, owned = HeldWork(folder), Owned(epoch=1, offset=0)
    held.fold(0, events(range(3)), owned, [])
    held.read_past(0, owned, 4)  # the commit marker at 3
    parts = held_parts(owned)
    (work,) = held.take(parts)
    store = Flushes(refuse_many=True)
    await flushed(store, folder, work, parts)
    assert store.applied == [(0, 1, 1), (1, 2, 1), (2, 3, 1), (3, 4, 0)]
    assert owned.offset == 4


async def test_a_flush_folded_again_without_events_counted_before_stores_the_same_offset(
    folder: Folder,
) -> None:
    held, owned = HeldWork(folder), Owned(epoch=1, offset=0)
    held.fold(0, events(range(3)), owned, [])
    held.read_past(0, owned, 9)  # an aborted transaction, 3-7, and its marker
    parts = held_parts(owned)
    (work,) = held.take(parts)
    store = Flushes(counted=frozenset(sorted(work.delta.seen.ids)[:1]))
    await flushed(store, folder, work, parts)
    assert store.applied == [(0, 9, 2)]
    assert owned.offset == 9
