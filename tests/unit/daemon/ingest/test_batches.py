"""Decoding a partition's records at once folds exactly what decoding them one by one folds.

The batch path (:meth:`EventDecoder.decode_many`, ``fold(..., flag_ok=...)``,
halving refused spans) must give, for any mix of valid and hostile messages,
the same cells to the last bit of every float sum, the same reject counts and
the same dead letters in the same order as the per-record path.
"""

from __future__ import annotations

import random
from dataclasses import replace

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.core.stats.aggregates import CellDelta, CellKey
from controller.core.stats.folding import PartitionDelta, Seen, fold
from controller.core.wire.decoding import EventDecoder, Rejection
from controller.daemon.ingest.batches import Folder
from controller.ports import DeadLetter, Record
from tests.support.reference import StubRecord, encode, make_event
from tests.unit.core.wire.test_decoder_fuzz import HOSTILE
from tests.unit.core.wire.test_decoding import event

MAX_BYTES = 65_536


def records(values: list[bytes | None]) -> list[Record]:
    return [StubRecord(value, offset) for offset, value in enumerate(values)]


def one_by_one(
    values: list[bytes | None],
) -> tuple[dict[CellKey, CellDelta], dict[str, int], list[tuple[int, str, str]]]:
    """The reference: every record through :meth:`EventDecoder.decode`, then one fold."""
    decoder = EventDecoder(max_bytes=MAX_BYTES)
    cells: dict[CellKey, CellDelta] = {}
    rejects: dict[str, int] = {}
    letters: list[tuple[int, str, str]] = []
    events = []
    for offset, value in enumerate(values):
        decoded = decoder.decode(value)
        if isinstance(decoded, Rejection):
            rejects[decoded.reason.value] = rejects.get(decoded.reason.value, 0) + 1
            letters.append((offset, decoded.reason.value, decoded.detail))
        else:
            events.append(decoded)
    fold(events, cells, seen=Seen())  # ingest folds an event id once
    return counted(cells), rejects, letters


def batched(
    values: list[bytes | None],
) -> tuple[dict[CellKey, CellDelta], dict[str, int], list[tuple[int, str, str]]]:
    rejected: list[DeadLetter] = []
    delta = Folder(max_event_bytes=MAX_BYTES).fold(0, records(values), rejected)
    letters = [(letter.record.offset, letter.reason, letter.detail) for letter in rejected]
    return counted(delta.cells), dict(delta.rejects), letters


def counted(cells: dict[CellKey, CellDelta]) -> dict[CellKey, CellDelta]:
    """The cells with their unit buckets' counts counted up: the native fold counts them
    as it folds, the Python fold lists one slot per count (both flush the same counts)."""
    return {
        key: replace(cell, hits=[], counts=dict(cell.bucket_counts()))
        for key, cell in cells.items()
    }


def valid(n: int, seed: int = 7) -> list[bytes | None]:
    rng = random.Random(seed)
    return [encode(make_event(rng, i, flags=5, units=50, versions=2)) for i in range(n)]


BAD: dict[str, bytes | None] = {
    "no value": None,
    "empty": b"",
    "oversize": orjson.dumps(event()) + b" " * MAX_BYTES,
    "malformed": b'{"type": "request",',
    "flag the pattern refuses": orjson.dumps(event(flag="Bad Flag")),
    "flag with a final newline": orjson.dumps(event(flag="checkout\n")),
    "unknown field": orjson.dumps(event(colour="red")),
    "repeated key (accepted on the slow path)": b'{"arm": "sideways",' + orjson.dumps(event())[1:],
    "two events in one": orjson.dumps(event()) + b" " + orjson.dumps(event()),
    "whitespace only": b"  ",
    "deep": b"[" * 40 + b"]" * 40,
}


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("where", [0, 17, 63, 99])
def test_one_bad_record_anywhere_in_a_batch(bad: str, where: int) -> None:
    values = valid(100)
    values[where] = BAD[bad]
    expected = one_by_one(values)
    assert expected != one_by_one(valid(100)), "the record counts, or is refused"
    assert batched(values) == expected


def test_every_kind_of_bad_record_in_one_batch() -> None:
    values = valid(300)
    for index, bad in enumerate(sorted(BAD)):
        values[index * 23 + 5] = BAD[bad]
    expected = one_by_one(values)
    assert sum(expected[1].values()) >= len(BAD) - 1  # the repeated key may be accepted
    assert batched(values) == expected


def test_a_clean_batch_takes_one_call_and_folds_in_order() -> None:
    values = valid(1000)
    decoder = EventDecoder(max_bytes=MAX_BYTES)
    events = decoder.decode_many(values)
    assert events is not None
    assert events == [decoder.decode(v) for v in values]
    assert batched(values) == one_by_one(values)


@pytest.mark.parametrize("bad", sorted(BAD))
def test_decode_many_refuses_a_run_with_a_record_decode_refuses(bad: str) -> None:
    values = [*valid(3), BAD[bad]]
    decoder = EventDecoder(max_bytes=MAX_BYTES)
    if isinstance(decoder.decode(BAD[bad]), Rejection) and "flag" not in bad:
        assert decoder.decode_many(values) is None


def test_fold_stops_at_the_first_flag_refused() -> None:
    decoder = EventDecoder(max_bytes=MAX_BYTES)
    values = [orjson.dumps(event(flag=f)) for f in ("a", "b", "Bad Flag", "c")]
    events = decoder.decode_many(values)
    assert events is not None
    delta = PartitionDelta(partition=0, next_offset=4)
    assert fold(events, delta.cells, flag_ok=decoder.flag_ok) is events[2]
    assert sorted(flag for flag, _, _ in delta.cells) == ["a", "b"]


@pytest.mark.parametrize(
    ("ids", "known", "counted", "repeats", "recorded"),
    [
        (["a", "b", "c"], [], 3, 0, ["a", "b", "c"]),
        (["a", "a", "b"], [], 2, 1, ["a", "b"]),  # a copy in the same batch
        (["a", "b", "a", "b", "a"], [], 2, 3, ["a", "b"]),
        (["a", "b", "c"], ["b"], 2, 1, ["a", "c"]),  # counted before: skipped, not recorded
        (["a", "b"], ["a", "b"], 0, 2, []),
        (["a", "a"], ["a"], 0, 2, []),
        (["x", "Bad", "y"], [], 2, 0, ["x", "y"]),  # a refused flag: dead-lettered, not an id
    ],
)
def test_a_partition_batch_folds_each_event_id_once(
    ids: list[str], known: list[str], counted: int, repeats: int, recorded: list[str]
) -> None:
    values: list[bytes | None] = [
        orjson.dumps(event(id=i, flag="Bad Flag" if i == "Bad" else "a")) for i in ids
    ]
    delta = Folder(max_event_bytes=MAX_BYTES).fold(0, records(values), [], known=frozenset(known))
    assert (delta.events, delta.seen.repeats) == (counted, repeats)
    assert sorted(delta.seen.recorded()) == recorded


def test_a_copy_that_breaks_the_contract_is_dead_lettered_not_skipped_as_a_copy() -> None:
    values: list[bytes | None] = [
        orjson.dumps(event(id="x", flag="a")),
        orjson.dumps(event(id="x", flag="Bad Flag")),
    ]
    rejected: list[DeadLetter] = []
    delta = Folder(max_event_bytes=MAX_BYTES).fold(0, records(values), rejected)
    assert (delta.events, delta.seen.repeats, [r.record.offset for r in rejected]) == (1, 0, [1])


MIXED = st.lists(
    st.one_of(st.sampled_from(valid(40)), HOSTILE, st.sampled_from(list(BAD.values()))),
    min_size=1,
    max_size=120,
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(MIXED)
def test_any_mix_folds_as_one_by_one(values: list[bytes | None]) -> None:
    assert batched(values) == one_by_one(values)
