"""What an events topic's keys are called and hold: the names more than one store uses,
and the unit buckets' counts as one packed string per cell, added to with ``BITFIELD``.

**Names.** The layout is in :mod:`..aggregates`: here are one partition's hash tag, the
set of partitions ever claimed, and where another source's partitions keep their
offsets.

**Unit buckets.**
An arm's unit buckets (:mod:`controller.core.stats.units`) are some 1,900
counters per cell: 64 buckets of exposures, requests, errors, conversions,
valued conversions and coarse latency bins. As fields of the cell's hash they
made each hash a hash table of hundreds of fields (past Redis's listpack
size, at about six times the memory per field), and every flush read and
wrote each field it touched (``HMGET``, then ``HSET``) to keep its counters
exact. Packed, they are strings per cell: a flush adds to them with
``BITFIELD`` ``INCRBY`` operations, no read, or, from the partition owner's copy
of the cell (:mod:`.copies`), writes each whole; and a gate's read (``read.lua``)
hands each cell's strings back as they are: the daemon adds them up
(:mod:`.lanes`), all lanes of a cell at once, and puts each lane in its slot
of the core's layout (:data:`SLOT_SOURCES`).

**Layout.** Lane ``k`` counts kind :data:`LANE_KINDS` ``[k // UNIT_BUCKETS]`` of
bucket ``k % UNIT_BUCKETS``: kind after kind, so ``BITFIELD`` grows a string
only to the highest lane written, and a cell whose latencies never reach the
slow bins stores no lanes for them. :data:`LANE_KINDS` only ever grows at its
end, so a string written before a kind was added reads the same after. A
cell's count is split over two strings, in the manner of a multi-word counter:

* ``{P:T:n}:n:<flag>:<ver>:<arm>``, the low words: lane ``k`` an unsigned
  16-bit big-endian integer at bit ``16k`` (:data:`LANE_WIDTH`), added to with
  ``OVERFLOW WRAP``: a cell of a stage's usual size never needs more, and at
  2 bytes a lane its string is a quarter of a 64-bit one's;
* ``{P:T:n}:h:<flag>:<ver>:<arm>``, the high words, made only when a low word
  wraps: lane ``k`` an unsigned 32-bit integer at bit ``32k``
  (:data:`HIGH_WIDTH`) counting the low word's wraps. ``BITFIELD`` answers each
  ``INCRBY`` with the new low word, and a low word below what was added has
  wrapped (were it not, it would be at least that): the flush script adds the
  carry to the high word in the same call of the script.

A lane's count is ``high * 2**16 + low``, so the sum of every cell's low and
high strings, each read as its own lanes, is the sum of the counts.
``{P:T:n}:b:<flag>:<ver>:<arm>``, a cell's single string of signed 64-bit
lanes (bit ``64k``), is how counts were stored before: no flush writes it now,
a read adds it as before, and a flush keeps its time to live.

**Exactness.** Each increment is a count the flush checks to be a whole
number below 2^53; a lane reaches its bound at 2^48 events (281 thousand
billion) of one kind in one bucket of one cell, where the high word's
``OVERFLOW FAIL`` leaves it unchanged. The read adds lanes as whole numbers,
exactly (:mod:`.lanes`), and hands them to the core as doubles, exact below
2^53; a negative lane in an old string, which no flush writes, fails the read.

The conversions' value sums are floats, which ``BITFIELD`` cannot hold: they
stay in the cell's hash, one field ``u<bucket>.s`` per bucket with any.
"""

from __future__ import annotations

from collections.abc import Iterable

from controller.core.stats import KINDS, SUM_KINDS, UNIT_BUCKETS

__all__ = [
    "HIGH_WIDTH",
    "LANE_BYTES",
    "LANE_COUNT",
    "LANE_KINDS",
    "LANE_WIDTH",
    "SLOT_COUNT",
    "SLOT_SOURCES",
    "SOURCES_PARTITION",
    "SUM_FIELDS",
    "lane_of_slots",
    "lane_offsets",
    "partition_tag",
    "partitions_key",
    "source_meta_key",
    "with_layout",
]

SOURCES_PARTITION = -1
"""The partition, among the events topic's, that holds what other sources count.

A Kafka partition is never negative, so its keys never collide with those of the
events topic's partitions 0..n. Every partition of every other source (the
OpenTelemetry topics) adds to it: one slot, one set of unit HyperLogLogs and
one id window for them all, so a unit or an event id seen on two of their
partitions counts once."""


def partition_tag(prefix: str, topic: str, partition: int) -> str:
    """The hash tag of one partition's keys: all of them live in one cluster slot."""
    return f"{{{prefix}:{topic}:{partition}}}"


def partitions_key(prefix: str, topic: str) -> str:
    """The set of the topic's partitions ever claimed."""
    return f"{prefix}:partitions:{topic}"


def source_meta_key(prefix: str, topic: str, source: str, partition: int) -> str:
    """The meta hash (epoch, offset) of ``partition`` of the other source topic ``source``.

    It lives in the slot of :data:`SOURCES_PARTITION`, so one flush script checks
    that source partition's fence and writes the aggregates it adds to."""
    return f"{partition_tag(prefix, topic, SOURCES_PARTITION)}:src:{source}:{partition}:meta"


_FIRST_LANE_KINDS = ("x", "r", "e", "c", "n", *(f"l{j}" for j in range(24)))
"""The kinds lanes were first laid out for, in order; never reordered."""
LANE_KINDS: tuple[str, ...] = (
    *_FIRST_LANE_KINDS,
    *(k for k in KINDS if k not in _FIRST_LANE_KINDS and k not in SUM_KINDS),
)
"""The integer kinds of a unit bucket, in lane order: later kinds only ever follow."""
LANE_COUNT = len(LANE_KINDS) * UNIT_BUCKETS
LANE_BYTES = LANE_COUNT * 8
"""The bytes of a cell's string of 64-bit lanes (the form before) with every lane written."""
LANE_WIDTH = 16
"""The bits of a lane's low word."""
HIGH_WIDTH = 32
"""The bits of a lane's high word: how many times its low word wrapped."""
SUM_FIELDS: tuple[str, ...] = tuple(
    f"u{b}.{kind}" for kind in SUM_KINDS for b in range(UNIT_BUCKETS)
)
"""The hash fields of the buckets' float sums."""
SLOT_COUNT = UNIT_BUCKETS * len(KINDS)
"""The core's slots of one arm's unit buckets (:class:`~controller.core.stats.UnitBuckets`)."""

_OFFSETS_BY_SLOT: list[int | None] = [None] * SLOT_COUNT
_sources: list[int] = [0] * SLOT_COUNT
for _b in range(UNIT_BUCKETS):
    for _k, _kind in enumerate(KINDS):
        _slot = _b * len(KINDS) + _k
        if _kind in SUM_KINDS:
            _sources[_slot] = LANE_COUNT + SUM_FIELDS.index(f"u{_b}.{_kind}")
        else:
            _lane = LANE_KINDS.index(_kind) * UNIT_BUCKETS + _b
            _sources[_slot] = _lane
            _OFFSETS_BY_SLOT[_slot] = LANE_WIDTH * _lane
_OFFSETS = tuple(_OFFSETS_BY_SLOT)
_LANES = tuple(None if at is None else at // LANE_WIDTH for at in _OFFSETS)
SLOT_SOURCES: tuple[int, ...] = tuple(_sources)
"""Where each slot of the core's layout comes from: lane ``i`` is ``i``, the float sum of
:data:`SUM_FIELDS` ``[j]`` is ``LANE_COUNT + j``."""


def with_layout(script: str) -> str:
    """A Lua script with the lanes' layout written into its placeholder lines: the bits of
    every low word (``local LANE_BITS = 0``), of one (``local LANE_WIDTH = 0``) and of a high
    word (``local HIGH_WIDTH = 0``), the float sums' fields in all (``local SUM_COUNT = 0``)
    and each one's place among them (``local UNIT_SUMS = {}``, in the order of
    :data:`SUM_FIELDS`); Lua counts from 1."""
    sums = ", ".join(f"['{name}'] = {j + 1}" for j, name in enumerate(SUM_FIELDS))
    return (
        script.replace("local LANE_BITS = 0 ", f"local LANE_BITS = {LANE_WIDTH * LANE_COUNT} ")
        .replace("local LANE_WIDTH = 0 ", f"local LANE_WIDTH = {LANE_WIDTH} ")
        .replace("local HIGH_WIDTH = 0 ", f"local HIGH_WIDTH = {HIGH_WIDTH} ")
        .replace("local SUM_COUNT = 0\n", f"local SUM_COUNT = {len(SUM_FIELDS)}\n")
        .replace("local UNIT_SUMS = {}\n", f"local UNIT_SUMS = {{{sums}}}\n")
    )


def lane_offsets(slots: Iterable[int]) -> list[int]:
    """``BITFIELD``'s offset, in bits, of each integer slot of the core's layout."""
    offsets = list(map(_OFFSETS.__getitem__, slots))  # in C: a flush names hundreds
    if None in offsets:
        raise ValueError("a float sum's slot holds no count")
    return offsets  # type: ignore[return-value]  # None is not among them


def lane_of_slots() -> list[int]:
    """The lane of each slot of the core's layout, by slot; a float sum's slot, which holds
    no count, names the lane past the last (a string that reached it is refused)."""
    return [LANE_COUNT if lane is None else lane for lane in _LANES]
