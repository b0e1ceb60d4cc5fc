"""Each named failure of a cell, as the flush counts it under its fingerprint (``failures.lua``).

A flush sends, with each cell, its named crashes, exceptions and failed requests grouped by
fingerprint: the fingerprint's id (:func:`failure_key`; a failed request's marked,
:func:`request_key`), its name and one example, both scrubbed again here
(an app may send any text in an event's ``failure``), its count, and its count in each unit
bucket. The store keeps, per flag and partition, which fingerprints are counted under their
own name: at most :data:`FAILURES_KEPT` at once, chosen by their count over both arms, at most
:data:`FAILURES_EVER` ever (docs/architecture.md, "What broke").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from importlib import resources

from controller.core.stats import REQUEST_FAILURE_MARK, UNIT_BUCKETS
from controller.core.telemetry import MAX_EXAMPLE_CHARS, scrub

FAILURES_KEPT = 16
"""Fingerprints a flag counts under their own name at once (each tested: a Bonferroni share
of the guardrail's alpha)."""
FAILURES_EVER = 64
"""Fingerprints a flag ever counts under their own name: what bounds each arm's fields."""
FAILURE_CANDIDATES = 64
"""Fingerprints counted while not kept; past them the least counted gives way."""
MAX_NAME_CHARS = 250
"""A fingerprint's name as kept (a type or status class, ``in`` and a frame or a route)."""
_MARK = "local FAILURE_COUNTS = nil  -- failures.lua\n"

FailureEntry = tuple[str, str, str, int, *tuple[int, ...]]
"""One fingerprint's part of a cell: its id, name, example, count, then bucket and count
pairs."""


def with_failure_counts(flush: str) -> str:
    """The flush script with ``failures.lua`` written in at its mark, its constants set."""
    chunk = (
        resources.files("controller.adapters.redis")
        .joinpath("failures.lua")
        .read_text("utf-8")
        .replace("local FAILURES_KEPT = 0 ", f"local FAILURES_KEPT = {FAILURES_KEPT} ")
        .replace("local FAILURES_EVER = 0 ", f"local FAILURES_EVER = {FAILURES_EVER} ")
        .replace(
            "local FAILURE_CANDIDATES = 0 ", f"local FAILURE_CANDIDATES = {FAILURE_CANDIDATES} "
        )
        .replace("local FAILURE_BUCKETS = 0 ", f"local FAILURE_BUCKETS = {UNIT_BUCKETS} ")
    )
    if _MARK not in flush:
        raise ValueError("the flush script has no place for the failures' counts")
    return flush.replace(_MARK, chunk)


def failure_name(failure: str) -> str:
    """A failure's name as kept: scrubbed as a name (numbers in names kept), cut."""
    return scrub(failure, limit=MAX_NAME_CHARS, names=True) or "failure"


def failure_key(name: str) -> str:
    """A fingerprint's id, from its kept name: 16 hex characters."""
    return hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def request_key(name: str) -> str:
    """A failed request's fingerprint id, from its kept name: marked apart from an exception's
    of the same name (:data:`~controller.core.stats.REQUEST_FAILURE_MARK`)."""
    return REQUEST_FAILURE_MARK + failure_key(name)


def failure_argument(
    failed: Iterable[tuple[str, str | None, int]],
    failed_requests: Iterable[tuple[str, int]] = (),
) -> list[FailureEntry]:
    """A cell's named failures (:attr:`~controller.core.stats.CellDelta.failed`, then
    :attr:`~controller.core.stats.CellDelta.failed_requests`) grouped by fingerprint, first
    seen first, each with the first example it came with (a failed request has none)."""
    grouped: dict[str, tuple[str, str, dict[int, int]]] = {}
    names: dict[str, str] = {}
    named = [(failure, example, bucket, failure_key) for failure, example, bucket in failed]
    named += [(failure, None, bucket, request_key) for failure, bucket in failed_requests]
    for failure, example, bucket, keyed in named:
        name = names.get(failure)
        if name is None:
            name = names[failure] = failure_name(failure)
        key = keyed(name)
        found = grouped.get(key)
        if found is None:
            shown = scrub(example, limit=MAX_EXAMPLE_CHARS) if example else ""
            found = grouped[key] = (name, shown, {})
        counts = found[2]
        counts[bucket] = counts.get(bucket, 0) + 1
    out: list[FailureEntry] = []
    for key, (name, example, counts) in grouped.items():
        pairs = [x for bucket in sorted(counts) for x in (bucket, counts[bucket])]
        out.append((key, name, example, sum(counts.values()), *pairs))
    return out
