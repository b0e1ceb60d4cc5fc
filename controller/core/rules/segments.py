"""Segments: named, versioned audiences that rules share, as a rule or a list of unit ids.

A segment is either an audience rule (:mod:`controller.core.rules.audience`) or a
set of unit ids. Rules name an id list with ``user_id in segment("beta")``;
:mod:`controller.core.rules.matching` asks a :class:`~controller.core.rules.matching.SegmentLookup`
whether the attribute's value is a member, which for an id list is one hash
lookup. A segment's rule may not name another segment: segments nest one level
only, so no chain of them is deep or circular, and a rule segment is matched
against the whole context, not one attribute's value (the lookup's ``matches``).

An id list travels as **parts**: the ids sorted by code point, without
duplicates, joined by ``\\n`` and cut into pieces of at most
:data:`MAX_PART_BYTES` (UTF-8), each gzip-compressed and base64-encoded. A
100,000-id list of UUIDs is 3.7 MB as text and 2 MB compressed, more than
one Kafka message holds (1 MiB by default), so ``rolloutctl`` sends one
signed command per part, and the controller delivers one topic record per
part beside the segment's record. The segment's record carries the count and
the SHA-256 of the whole text, so a receiver that assembled the parts knows it
holds exactly what the operator sent. Each part is decompressed with a bound
(a small part cannot inflate past :data:`MAX_PART_BYTES`), every id is checked
like a unit id, and the whole list is bounded by :data:`MAX_IDS` ids and
:data:`MAX_PARTS` parts.

Pure: no I/O. The wire models live in :mod:`controller.core.wire.segment_messages`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from controller.core.rules.audience import AudienceRule, conditions
from controller.core.rules.audience import Segment as SegmentReference

MAX_NAME_CHARS = 120
"""A segment's name; its decisions are keyed ``segment:<name>``, within a flag key's 128."""
MAX_ID_CHARS = 256
"""The longest id, as the longest unit id events carry."""
MAX_IDS = 1_000_000
"""The most ids one segment holds."""
MAX_PART_BYTES = 128 * 1024
"""The most text (ids and newlines, UTF-8) one part holds before compression."""
MAX_PARTS = 512
"""The most parts of one list: 1,000,000 ids of 64 characters fit."""
MAX_PART_DATA_CHARS = 200_000
"""The longest base64 part: gzip adds a little to text that does not compress."""
GZIP = 31
"""zlib's window bits for the gzip format."""


@dataclass(frozen=True, slots=True)
class PackedIds:
    """An id list as it travels: its parts, its size and the hash of its whole text."""

    parts: tuple[str, ...]
    count: int
    sha256: str


def canonical(ids: Iterable[str]) -> list[str]:
    """The ids as a segment holds them: each checked, sorted by code point, without duplicates.

    Raises ``ValueError`` naming the first bad id or the bound passed.
    """
    unique = sorted(set(ids))
    for number, unit in enumerate(unique, 1):
        problem = id_problem(unit)
        if problem:
            raise ValueError(f"id {number} ({unit[:40]!r}): {problem}")
    if len(unique) > MAX_IDS:
        raise ValueError(f"{len(unique)} ids, at most {MAX_IDS}")
    return unique


def id_problem(unit: str) -> str | None:
    """Why ``unit`` cannot be in a segment, or None."""
    if not unit or len(unit) > MAX_ID_CHARS:
        return f"an id has 1 to {MAX_ID_CHARS} characters"
    if "\n" in unit:
        return "an id has no line break"
    try:
        unit.encode()
    except UnicodeEncodeError:
        return "an id must be valid Unicode (no lone surrogates)"
    return None


def pack(ids: Iterable[str]) -> PackedIds:
    """The parts of an id list (see the module's docstring); ``ValueError`` past a bound."""
    unique = canonical(ids)
    digest = hashlib.sha256()
    parts: list[str] = []
    piece: list[bytes] = []
    size = 0
    for unit in unique:
        raw = unit.encode()
        if piece and size + 1 + len(raw) > MAX_PART_BYTES:
            parts.append(_compressed(piece))
            piece, size = [], 0
        size += len(raw) + (1 if piece else 0)
        piece.append(raw)
    if piece:
        parts.append(_compressed(piece))
    digest.update(b"\n".join(u.encode() for u in unique))
    if len(parts) > MAX_PARTS:
        raise ValueError(
            f"the ids make {len(parts)} parts of {MAX_PART_BYTES} bytes, at most {MAX_PARTS}"
        )
    return PackedIds(tuple(parts), len(unique), digest.hexdigest())


def _compressed(piece: list[bytes]) -> str:
    packer = zlib.compressobj(6, zlib.DEFLATED, GZIP)
    data = packer.compress(b"\n".join(piece)) + packer.flush()
    return base64.b64encode(data).decode()


def unpack(data: str) -> list[str]:
    """The ids of one part; ``ValueError`` for bad base64 or gzip, an oversize or a bad id.

    Decompression stops past :data:`MAX_PART_BYTES`, so a small part crafted to
    inflate without end costs no more than that.
    """
    if len(data) > MAX_PART_DATA_CHARS:
        raise ValueError(f"a part has {len(data)} characters, at most {MAX_PART_DATA_CHARS}")
    try:
        compressed = base64.b64decode(data, validate=True)
        unpacker = zlib.decompressobj(GZIP)
        text = unpacker.decompress(compressed, MAX_PART_BYTES + 1)
    except (binascii.Error, zlib.error) as exc:
        raise ValueError(f"a part is not base64 of gzip: {exc}") from None
    if len(text) > MAX_PART_BYTES or unpacker.unconsumed_tail:
        raise ValueError(f"a part inflates past {MAX_PART_BYTES} bytes")
    if not unpacker.eof or unpacker.unused_data:
        raise ValueError("a part is not one whole gzip stream")
    try:
        ids = text.decode().split("\n")
    except UnicodeDecodeError:
        raise ValueError("a part is not UTF-8 text") from None
    for unit in ids:
        problem = id_problem(unit)
        if problem:
            raise ValueError(f"{problem}: {unit[:40]!r}")
    return ids


def assemble(parts: Sequence[str], *, count: int, sha256: str) -> frozenset[str]:
    """The ids of a whole list, checked: strictly increasing, ``count`` of them, hashing to
    ``sha256``. ``ValueError`` says what does not hold.
    """
    if not parts or len(parts) > MAX_PARTS:
        raise ValueError(f"a list has 1 to {MAX_PARTS} parts, this has {len(parts)}")
    ids: list[str] = []
    for number, data in enumerate(parts):
        try:
            ids += unpack(data)
        except ValueError as exc:
            raise ValueError(f"part {number}: {exc}") from None
        if len(ids) > MAX_IDS:
            raise ValueError(f"more than {MAX_IDS} ids")
    if any(a >= b for a, b in pairwise(ids)):
        raise ValueError("the ids are not sorted without duplicates")
    if len(ids) != count:
        raise ValueError(f"the parts hold {len(ids)} ids, the list says {count}")
    if hashlib.sha256("\n".join(ids).encode()).hexdigest() != sha256:
        raise ValueError("the parts do not hash to the list's sha256")
    return frozenset(ids)


def rule_problem(rule: AudienceRule) -> str | None:
    """Why ``rule`` cannot be a segment's rule (it names a segment), or None."""
    for condition in conditions(rule.root):
        if isinstance(condition.value, SegmentReference):
            named = condition.value.segment
            return (
                f"a segment's rule cannot name a segment (it names {named!r}): segments nest once"
            )
    return None
