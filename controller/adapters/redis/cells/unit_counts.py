"""Each unit's own counts in a cell, as the flush writes them (``units.lua``).

A flush sends, with each cell, its units' requests and failed requests, in the order of the
cell's units, and each unit's field: the 8 bytes of a 64-bit MurmurHash3 of its id, seeded
apart from the arms' bucketing and the watched draw. The fields travel as one argument of
their own (Lua's msgpack reads no binary). The store keeps them in small hashes per cell (a
unit's failures under its field and :data:`FAILURES_MARK`), more of them as the cell's units
grow (linear hashing, :data:`SHARD_LOAD` units a hash), so each stays a listpack (Redis's
memory-optimised encoding of a small hash, up to ``hash-max-listpack-entries`` fields, 128 by
default), and the cell's
:data:`~controller.core.stats.HEAVIEST_KEPT` heaviest units in a sorted set beside them, each
member a unit's field then its id (docs/architecture.md, "Each unit counted"). A cell keeps
at most ``redis.max_units_per_cell`` units: one first seen past them adds its requests to the
cell's ``over`` alone, which a read hands on (:attr:`HeaviestReply.over`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from importlib import resources

import mmh3
import msgspec

from controller.adapters.redis.cells.failure_counts import with_failure_counts
from controller.adapters.redis.cells.layout import with_layout
from controller.core.common import StoreError
from controller.core.stats import HEAVIEST_KEPT, CellDelta, Heaviest, merged_lists

SHARD_LOAD = 40
"""Units a cell's small hashes hold on average before one more is split off: a shard not yet
split at its level holds up to twice as many, and with their failures, well under the 128
entries Redis keeps as a listpack by default."""
UNIT_FIELD_SEED = 0x0C0_FFEE
"""The seed of a unit's field hash, apart from the bucketing's and the watched draw's."""

_MARK = "local PER_UNIT_COUNTS = nil  -- units.lua\n"


_SHARD_OF_MARK = "local UNIT_SHARD_OF = nil  -- unit_shards.lua\n"


def with_heaviest_kept(script: str) -> str:
    """A Lua script with the heaviest units a cell keeps written into its placeholder line,
    and where it has its mark, how a unit's shard is found (``unit_shards.lua``: one text for
    the flush and the read)."""
    shard_of = resources.files("controller.adapters.redis").joinpath("unit_shards.lua")
    return script.replace(
        "local HEAVIEST_KEPT = 0 ", f"local HEAVIEST_KEPT = {HEAVIEST_KEPT} "
    ).replace(_SHARD_OF_MARK, shard_of.read_text("utf-8"))


def flush_script() -> str:
    """``flush.lua`` as the store runs it: the layout's constants, the per-unit counts and the
    failures' counts written in."""
    text = resources.files("controller.adapters.redis").joinpath("flush.lua").read_text("utf-8")
    return with_failure_counts(with_unit_counts(with_layout(text)))


def with_unit_counts(flush: str) -> str:
    """The flush script with ``units.lua`` written in at its mark, its constants set."""
    chunk = with_heaviest_kept(
        resources.files("controller.adapters.redis")
        .joinpath("units.lua")
        .read_text("utf-8")
        .replace("local SHARD_LOAD = 0 ", f"local SHARD_LOAD = {SHARD_LOAD} ")
    )
    if _MARK not in flush:
        raise ValueError("the flush script has no place for the per-unit counts")
    return flush.replace(_MARK, chunk)


def unit_fields(units: Sequence[str]) -> bytes:
    """Each unit's 8-byte field, in order, as one string."""
    hash64, seed = mmh3.hash64, UNIT_FIELD_SEED
    pack = struct.Struct("<q").pack
    # Bytes, never the text: mmh3 crashes the process on a lone surrogate in a str.
    return b"".join(pack(hash64(u.encode("utf-8", "surrogatepass"), seed)[0]) for u in units)


def unit_field(unit: str) -> bytes:
    """One unit's field: where its counts are in a cell's hashes."""
    return unit_fields((unit,))


FAILURES_MARK = b"e"
"""After a unit's field, the field of its failed requests (in the same hash)."""


def unit_shard(field: bytes, level: int, split: int) -> int:
    """The shard of a cell's hashes that holds ``field``, with the cell's shards at ``level``
    and ``split`` (its unit key's fields): linear hashing, as ``units.lua`` addresses them."""
    h = int.from_bytes(field[:4], "little")
    at = h % (1 << level)
    return h % (2 << level) if at < split else at


def unit_argument(
    cell: CellDelta, units: Sequence[str], raw: list[bytes], raw_from: int
) -> tuple[object, ...]:
    """A cell's per-unit counts for the flush script: where in its arguments the fields are
    (appended to ``raw``, whose first is argument ``raw_from``), then each unit's requests and
    failed requests, in ``units``' order; nothing for a cell that counted no request."""
    requests, errors = cell.unit_requests, cell.unit_errors
    if not requests:
        return ()
    at = raw_from + len(raw)
    raw.append(unit_fields(units))
    return (
        at,
        [requests.get(u, 0) for u in units],
        [errors.get(u, 0) for u in units],
    )


class HeaviestReply(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One cell's heaviest units as ``read.lua`` reads them."""

    full: bool
    """The cell keeps as many as it may: a unit it leaves out sent at most its last count."""
    units: tuple[str | int, ...]
    """Flat: each unit's id, its requests, its failed requests."""
    over: int = 0
    """The requests of the units the cell counted past its most (``units.lua``): kept only
    as this sum, so any one of them sent at most this many."""

    def rows(self) -> list[tuple[str, int, int]]:
        """Each listed unit's id, requests and failed requests."""
        flat = self.units
        try:
            return [
                (str(flat[i]), int(flat[i + 1]), int(flat[i + 2])) for i in range(0, len(flat), 3)
            ]
        except (IndexError, ValueError) as exc:
            raise StoreError(f"a cell's heaviest units read as {flat[:6]!r}...") from exc


def heaviest_of(cells: Iterable[HeaviestReply]) -> Heaviest:
    """An arm's heaviest units over its cells' lists (:func:`~controller.core.stats.merged`,
    made as :func:`~controller.core.stats.merged_lists` makes it)."""
    return merged_lists((cell.rows(), cell.full, cell.over) for cell in cells)
