"""The heaviest units of an arm: each unit's requests and errors, exact, the largest kept.

Every flush counts each unit's requests and errors in the arm of the stage it was served,
exactly once with the rest of the cell (docs/architecture.md, "Each unit counted"): the store
keeps every unit's counts, and beside them the :data:`HEAVIEST_KEPT` units with the most
requests per partition, each with its id as the app sent it. A read merges the partitions'
lists (:func:`merged`): a unit's counts are summed over the partitions that list it. Where a
partition's list is full, a unit it does not list sent it at most the list's smallest count
there; :attr:`Heaviest.unlisted_at_most` adds those up, so a unit's total is known exactly
when it is zero (always, where every unit's events go to one partition, as the SDK and the
HTTP intake key them). A partition keeps the counts of at most so many units (the store's
bound); a unit first seen past them is kept nowhere, its requests only summed
(:attr:`Heaviest.unkept_requests`), and it may have sent the partition all of them, so
that sum bounds what the partition leaves out too.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

HEAVIEST_KEPT = 64
"""Units kept per partition, flag version and arm, those with the most requests. A unit with
a share s of an arm's requests holds at least that share of one partition's, so it is listed
wherever s > 1/HEAVIEST_KEPT.

Caps cut only the units listed (:mod:`.caps` raises the cap to a full list's smallest count,
so that both arms are capped alike), so the list must hold the units over the cap of the
larger arm. At 16, bots (0.1% of units sending 5,000 requests each) filled the larger arm's
list from a stage of 20,000 units on, and the cap rose to their own count: it cut nothing
where they weigh most. 64 hold an 80,000-unit stage's bots (about 40 an arm) and the
heaviest users beside them. A cell's sorted set of 64 stays a listpack (Redis's
``zset-max-listpack-entries``, 128 by default), and a read looks up each listed unit's
failures: 64 lookups a cell."""


@dataclass(frozen=True, slots=True)
class UnitCount:
    """One unit's requests and errors in one arm, as counted so far."""

    unit: str
    """Its id as the app sent it."""
    requests: int
    errors: int


def _order(count: UnitCount) -> tuple[int, str]:
    return (-count.requests, count.unit)


@dataclass(frozen=True, slots=True)
class Heaviest:
    """An arm's heaviest units, most requests first (ties by id), and how exact they are."""

    units: tuple[UnitCount, ...] = ()
    unlisted_at_most: int = 0
    """The most requests a unit may have sent in partitions whose lists do not hold it: 0
    where every count listed is exact and no unit left out could outweigh the last one."""
    unkept_requests: int = 0
    """Requests of units whose own counts the store did not keep, being past its bound on
    units (none of them listed): 0 where it kept every unit."""

    def plus(self, other: Heaviest) -> Heaviest:
        """Both lists merged, as over more partitions or flag versions."""
        return merged((self, other))


def merged(parts: Iterable[Heaviest], keep: int = HEAVIEST_KEPT) -> Heaviest:
    """The parts' lists summed unit by unit, the ``keep`` heaviest kept (most requests first,
    ties by id, so a replay orders them alike); the bounds of what they leave out added."""
    totals: dict[str, list[int]] = {}
    bound = unkept = 0
    for part in parts:
        bound += part.unlisted_at_most
        unkept += part.unkept_requests
        for count in part.units:
            _add(totals, count.unit, count.requests, count.errors)
    return Heaviest(_top(totals, keep), bound, unkept)


Row = tuple[str, int, int]
"""A unit's id, requests and errors, as a cell's list holds them."""


def partition_list(members: Iterable[Row], *, full: bool, unkept: int = 0) -> Heaviest:
    """One partition's stored list ``(unit, requests, errors)``; ``full``: it holds
    :data:`HEAVIEST_KEPT` units, so any unit kept that it leaves out sent at most its smallest
    count; ``unkept``: the requests of the units the partition did not keep, any one of which
    may have sent all of them. A unit left out is one or the other: the larger bounds it."""
    units = tuple(sorted((UnitCount(u, n, e) for u, n, e in members), key=_order))
    floor = units[-1].requests if full and units else 0
    return Heaviest(units, max(floor, unkept), unkept)


def merged_lists(
    cells: Iterable[tuple[Sequence[Row], bool, int]], keep: int = HEAVIEST_KEPT
) -> Heaviest:
    """``merged(partition_list(rows, full=full, unkept=unkept) for rows, full, unkept in
    cells)``, as a read merges its cells' lists: without a list made for each cell, and a
    :class:`UnitCount` made for the units kept alone (a read of 24 full cells made 3,000)."""
    totals: dict[str, list[int]] = {}
    bound = unkept_sum = 0
    for rows, full, unkept in cells:
        for unit, n, e in rows:
            _add(totals, unit, n, e)
        floor = min(n for _, n, _ in rows) if full and rows else 0
        bound += max(floor, unkept)
        unkept_sum += unkept
    return Heaviest(_top(totals, keep), bound, unkept_sum)


def _add(totals: dict[str, list[int]], unit: str, requests: int, errors: int) -> None:
    got = totals.get(unit)
    if got is None:
        totals[unit] = [requests, errors]
    else:
        got[0] += requests
        got[1] += errors


def _top(totals: dict[str, list[int]], keep: int) -> tuple[UnitCount, ...]:
    """The ``keep`` units of most requests, ties by id."""
    best = heapq.nsmallest(keep, totals.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return tuple(UnitCount(unit, counts[0], counts[1]) for unit, counts in best)
