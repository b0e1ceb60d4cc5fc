"""Per-arm aggregates: what ingest accumulates and the gates read.

A :class:`CellDelta` is the increment that one batch adds for one
(flag, flag_version, arm); an :class:`ArmAggregate` is the sum that a read
returns. Both use the same field names as the store's hash fields.

Units seen in both arms are counted on a bounded sample of units drawn by
their hash: one unit in four (:data:`WATCH_ONE_IN_BITS`), whenever it comes
(:func:`watched_members`), so a unit whose second arm comes late is in the
sample as surely as one that crosses at once, and the share of the sample seen
in both arms estimates the stage's without bias. Each watched unit is held as
a 64-bit integer (a hash of its id), which Redis keeps in a compact integer
set. The store keeps the watched units of each (partition, flag version, arm)
in a set and, as a flush adds a unit to one arm's set, counts it if the other
arm's set already holds it; once either arm's set of a version holds
:data:`WATCH_CAP` units, the version's sample is full and stops growing in
both arms. The counts (:data:`WATCHED_FIELD` and
:data:`BOTH_FIELD` in each arm's hash) are written by the same atomic flush
as the aggregates, so they are exactly once with them.

Named conversions (OpenFeature's ``client.track("checkout_completed")``) are counted
twice: in the conversion counters every conversion adds to (``conv``,
``cv_n``, ``cv_sum``, ``cv_sq``), so a guardrail that names no conversion
reads every conversion, named or not, as it always did; and under their name,
in the same fields suffixed by it (``conv:checkout_completed``, ...), which a
guardrail naming that conversion reads alone. A flag keeps at most
:data:`MAX_CONVERSION_NAMES` names per partition: the flush admits a name the
first time it is seen while there is room, and counts a conversion of any name
past the cap under :data:`OTHER_CONVERSIONS` instead (its count only; it still
counts in the total). So a hostile app cannot grow a flag's hashes without
bound, and an app with fewer names is counted exactly under each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import mmh3

from controller.core.common import BUCKET_COUNT
from controller.core.stats.failures.counts import FailureCounts, merged_failures
from controller.core.stats.heaviest.counts import Heaviest
from controller.core.stats.units import (
    CRASHES,
    EXCEPTIONS,
    FLOAT_SLOTS,
    SLOT_FIELDS,
    UnitBuckets,
    slot_of,
)

COUNTER_FIELDS = ("exp", "req", "err", "lat_n", "conv", "cv_n")
"""Integer counters: exposures, requests, errors, requests with a latency,
conversions, conversions with a value."""
FLOAT_FIELDS = ("lat_sum", "cv_sum", "cv_sq")
"""Float sums: latency in ms, conversion value, conversion value squared."""
HIST_PREFIX = "h"
"""Histogram bucket ``i`` is stored under the field ``h<i>``."""
WATCHED_FIELD = "wu"
"""Units added to the arm's watched set (each once per arm)."""
BOTH_FIELD = "both"
"""Watched units that, added to this arm's set, were already in the other arm's."""
WATCH_CAP = 4096
"""Units watched per partition, flag version and arm; a full sample stops growing."""
WATCH_ONE_IN_BITS = 2
"""One unit in ``2 ** WATCH_ONE_IN_BITS`` (four) is watched: those whose hash has these low
bits of its high word zero (:func:`watched_members`)."""
WATCH_DRAW = (1 << WATCH_ONE_IN_BITS) - 1
"""The bits of a unit's high word that must all be zero for it to be watched."""
WATCH_SEED = 0x5EED_0A75
"""The seed of the watched draw's hash, apart from the arms' bucketing."""
NAMED_COUNTERS = ("conv", "cv_n")
"""A named conversion's integer counters, stored as ``<field>:<name>``."""
NAMED_FLOATS = ("cv_sum", "cv_sq")
"""A named conversion's float sums, stored as ``<field>:<name>``."""
NAME_SEPARATOR = ":"
"""Between a field and the conversion name it counts (the first ``:`` of a field name)."""
MAX_CONVERSION_NAMES = 64
"""Conversion names a flag keeps per partition; a conversion of a name past them is counted
under :data:`OTHER_CONVERSIONS` (and in the total)."""
OTHER_CONVERSIONS = "~other"
"""The bucket of the names past :data:`MAX_CONVERSION_NAMES`: no conversion name (they start
with a letter) and no plan can name it."""


CellKey = tuple[str, int, str]
"""Where an event is counted: (flag, flag_version, arm). Ingest needs no rollout
state to compute it. A plain tuple because it is built once per event; an
:class:`Arm` member equals and hashes like its string value."""


def watched_members(units: Iterable[str]) -> list[str]:
    """The units of ``units`` drawn into the watched sample, each as the decimal text of a
    signed 64-bit hash of its id: what a flush adds to its arm's set of watched units.

    One 128-bit MurmurHash3 of the unit's id (seeded apart from the arms' bucketing, which
    hashes the flag and salt with it) gives both halves: the high word draws one unit in
    four, the low word is its member. The draw depends on the unit alone, so the same
    units are drawn in both arms and on every flush, whenever they come; 64 bits keep two
    units of one stage from sharing a member (a false crossing) at any stage's size.
    """
    out = []
    hash64, draw, seed = mmh3.hash64, WATCH_DRAW, WATCH_SEED
    for unit in units:
        # Bytes, never the text: mmh3 crashes the process on a lone surrogate in a str
        low, high = hash64(unit.encode("utf-8", "surrogatepass"), seed)
        if not high & draw:
            out.append(str(low))
    return out


@dataclass(slots=True)
class NamedDelta:
    """The increments one batch applies to one named conversion of one cell."""

    conv: int = 0
    cv_n: int = 0
    cv_sum: float = 0.0
    cv_sq: float = 0.0


@dataclass(slots=True)
class CellDelta:
    """The increments one batch applies to one cell; mutable while folding."""

    exp: int = 0
    req: int = 0
    err: int = 0
    lat_n: int = 0
    conv: int = 0
    cv_n: int = 0
    lat_sum: float = 0.0
    cv_sum: float = 0.0
    cv_sq: float = 0.0
    hist: dict[int, int] = field(default_factory=dict)
    units: set[str] = field(default_factory=set)
    unit_requests: dict[str, int] = field(default_factory=dict)
    """Each unit's requests (:mod:`controller.core.stats.heaviest`)."""
    unit_errors: dict[str, int] = field(default_factory=dict)
    """Each unit's failed requests, for the units with any."""
    named: dict[str, NamedDelta] = field(default_factory=dict)
    """Per conversion name (first seen first), its own counts; each also counts in ``conv``..."""
    failures: int = 0
    """Crash and exception events folded: counted in the unit buckets alone (no store field of
    the arm's own), and here for ingest's count of events."""
    failed: list[tuple[str, str | None, int]] = field(default_factory=list)
    """Each crash or exception folded that names its failure: its name as the event gave it,
    its example (None: none given) and its unit's bucket, in the order folded
    (:mod:`controller.core.stats.failures`)."""
    failed_requests: list[tuple[str, int]] = field(default_factory=list)
    """Each failed request folded that names its failure (``5xx GET /cart/{id}``): its name as
    the event gave it and its unit's bucket, in the order folded; never an exception."""
    hits: list[int] = field(default_factory=list)
    """The unit buckets' integer slots (:mod:`controller.core.stats.units`), one entry per
    count: the fold appends, the flush counts them up once (:meth:`bucket_counts`)."""
    sums: dict[int, float] = field(default_factory=dict)
    """The unit buckets' float increments (the conversions' values) by slot."""
    buckets: dict[int, float] = field(default_factory=dict)
    """Unit bucket increments given whole, by slot, integer and float slots alike (a cell
    made rather than folded); counted with :attr:`hits` and :attr:`sums`."""
    counts: dict[int, int] = field(default_factory=dict)
    """The unit buckets' integer slots counted up already, by slot (the native fold's, which
    counts as it folds: docs/architecture.md, "Decoding and folding natively"); counted
    with :attr:`hits`."""

    def bucket_counts(self) -> dict[int, int]:
        """The unit buckets' integer increments by slot (each one positive)."""
        counts = Counter(self.hits)
        if self.counts:
            counts.update(self.counts)
        for slot, n in self.buckets.items():
            if n and slot not in FLOAT_SLOTS:
                counts[slot] += int(n)
        return counts

    def bucket_sums(self) -> dict[int, float]:
        """The unit buckets' non-zero float increments by slot."""
        if not self.buckets:
            return {s: x for s, x in self.sums.items() if x}
        out = dict(self.sums)
        for slot, x in self.buckets.items():
            if slot in FLOAT_SLOTS:
                out[slot] = out.get(slot, 0.0) + x
        return {s: x for s, x in out.items() if x}

    def base_counters(self) -> dict[str, int]:
        """Non-zero integer increments by store field name, histogram included, unit buckets
        not (:meth:`bucket_counts`)."""
        out = {name: getattr(self, name) for name in COUNTER_FIELDS if getattr(self, name)}
        out.update({f"{HIST_PREFIX}{i}": n for i, n in self.hist.items()})
        return out

    def counters(self) -> dict[str, int]:
        """Non-zero integer increments by store field name, histogram and unit buckets included."""
        out = self.base_counters()
        out.update({SLOT_FIELDS[s]: n for s, n in self.bucket_counts().items()})
        return out

    def base_floats(self) -> dict[str, float]:
        """Non-zero float increments by store field name, the unit buckets' sums not."""
        return {name: getattr(self, name) for name in FLOAT_FIELDS if getattr(self, name)}

    def floats(self) -> dict[str, float]:
        """Non-zero float increments by store field name (the unit buckets' sums included)."""
        out = self.base_floats()
        out.update({SLOT_FIELDS[s]: x for s, x in self.bucket_sums().items()})
        return out

    def named_fields(self) -> dict[str, float]:
        """The named conversions' non-zero increments by store field name (``conv:<name>``...).

        Every name is kept here; the flush admits at most :data:`MAX_CONVERSION_NAMES` of a
        flag's per partition (see the module).
        """
        out: dict[str, float] = {}
        for name, delta in self.named.items():
            for kind in (*NAMED_COUNTERS, *NAMED_FLOATS):
                value = getattr(delta, kind)
                if value:
                    out[f"{kind}{NAME_SEPARATOR}{name}"] = value
        return out


@dataclass(frozen=True, slots=True)
class Conversions:
    """One conversion name's counts in one arm: how many, how many with a value, their sums."""

    count: int = 0
    values: int = 0
    value_sum: float = 0.0
    value_sq: float = 0.0

    def plus(self, other: Conversions) -> Conversions:
        return Conversions(
            self.count + other.count,
            self.values + other.values,
            self.value_sum + other.value_sum,
            self.value_sq + other.value_sq,
        )


@dataclass(frozen=True, slots=True)
class ArmAggregate:
    """Everything counted for one arm, summed over flag versions and partitions."""

    exposures: int = 0
    units: int = 0
    requests: int = 0
    errors: int = 0
    latency_count: int = 0
    latency_sum_ms: float = 0.0
    latency_histogram: tuple[int, ...] = (0,) * BUCKET_COUNT
    conversions: int = 0
    conversion_values: int = 0
    conversion_value_sum: float = 0.0
    conversion_value_sq: float = 0.0
    named: Mapping[str, Conversions] = field(default_factory=dict)
    """Per conversion name, its own counts (each also counted in ``conversions``...)."""
    buckets: UnitBuckets | None = None
    """The arm's unit buckets (:mod:`controller.core.stats.units`); None where a source has no
    units (a Prometheus series) or nothing was counted in them."""
    heaviest: Heaviest = field(default_factory=Heaviest)
    """The units with the most requests, each with its own counts
    (:mod:`controller.core.stats.heaviest`)."""
    failed: Mapping[str, FailureCounts] = field(default_factory=dict)
    """The failures counted under their fingerprints, by fingerprint
    (:mod:`controller.core.stats.failures`)."""

    @property
    def crashes(self) -> int:
        """Crashes counted: kept in the unit buckets alone, which count every one of them (a
        crash has a unit, and crashes were first counted after buckets were)."""
        return 0 if self.buckets is None else round(self.buckets.total(CRASHES))

    @property
    def exceptions(self) -> int:
        """Exceptions counted (every crash among them), from the unit buckets as crashes are."""
        return 0 if self.buckets is None else round(self.buckets.total(EXCEPTIONS))

    def converted(self, name: str | None) -> ArmAggregate:
        """This arm as a guardrail on conversion ``name`` reads it: its conversion counts those
        of that name alone (none when it has none); None: every conversion, as it is."""
        if name is None:
            return self
        own = self.named.get(name, Conversions())
        return replace(
            self,
            conversions=own.count,
            conversion_values=own.values,
            conversion_value_sum=own.value_sum,
            conversion_value_sq=own.value_sq,
        )

    def plus(self, other: ArmAggregate) -> ArmAggregate:
        """Both arms' counts added (units too: a unit in both is counted twice), their
        histograms and unit buckets bin by bin; no buckets where neither has any."""
        named = dict(self.named)
        for name, got in other.named.items():
            named[name] = named[name].plus(got) if name in named else got
        mine, theirs = self.buckets, other.buckets
        return ArmAggregate(
            exposures=self.exposures + other.exposures,
            units=self.units + other.units,
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            latency_count=self.latency_count + other.latency_count,
            latency_sum_ms=self.latency_sum_ms + other.latency_sum_ms,
            latency_histogram=tuple(
                a + b for a, b in zip(self.latency_histogram, other.latency_histogram, strict=True)
            ),
            conversions=self.conversions + other.conversions,
            conversion_values=self.conversion_values + other.conversion_values,
            conversion_value_sum=self.conversion_value_sum + other.conversion_value_sum,
            conversion_value_sq=self.conversion_value_sq + other.conversion_value_sq,
            named=named,
            buckets=mine.plus(theirs) if mine and theirs else (mine or theirs),
            heaviest=self.heaviest.plus(other.heaviest),
            failed=merged_failures(self.failed, other.failed),
        )

    @classmethod
    def from_fields(cls, fields: dict[str, float], *, units: int) -> ArmAggregate:
        """Build from summed store fields (missing fields count as zero)."""
        hist = [0] * BUCKET_COUNT
        named: dict[str, dict[str, float]] = {}
        slots: dict[int, float] = {}
        for name, value in fields.items():  # each name is of one kind at most: slots first
            slot = slot_of(name)  # (most fields by far), then ``h<i>``, then ``<kind>:<name>``
            if slot is not None:
                slots[slot] = float(value)
            elif name.startswith(HIST_PREFIX) and name[1:].isdigit():
                hist[int(name[1:])] = int(value)
            elif NAME_SEPARATOR in name:
                kind, _, conversion = name.partition(NAME_SEPARATOR)
                if kind in NAMED_COUNTERS or kind in NAMED_FLOATS:
                    named.setdefault(conversion, {})[kind] = value
        return cls(
            exposures=int(fields.get("exp", 0)),
            units=units,
            requests=int(fields.get("req", 0)),
            errors=int(fields.get("err", 0)),
            latency_count=int(fields.get("lat_n", 0)),
            latency_sum_ms=float(fields.get("lat_sum", 0.0)),
            latency_histogram=tuple(hist),
            conversions=int(fields.get("conv", 0)),
            conversion_values=int(fields.get("cv_n", 0)),
            conversion_value_sum=float(fields.get("cv_sum", 0.0)),
            conversion_value_sq=float(fields.get("cv_sq", 0.0)),
            named={
                name: Conversions(
                    int(got.get("conv", 0)),
                    int(got.get("cv_n", 0)),
                    float(got.get("cv_sum", 0.0)),
                    float(got.get("cv_sq", 0.0)),
                )
                for name, got in named.items()
            },
            buckets=_buckets(slots),
        )


def _buckets(slots: Mapping[int, float]) -> UnitBuckets | None:
    if not slots:
        return None
    totals = [0.0] * len(SLOT_FIELDS)
    for slot, value in slots.items():
        totals[slot] = value
    return UnitBuckets(tuple(totals))


@dataclass(frozen=True, slots=True)
class FlagAggregates:
    """Both arms of one flag over a set of flag versions."""

    flag: str
    versions: frozenset[int]
    treatment: ArmAggregate
    control: ArmAggregate
    watched: int = 0
    """Watched units of the stage (see the module), each counted once per arm it was seen in."""
    both_arms: int = 0
    """Watched units seen in both arms (under one flag version)."""

    @property
    def watched_units(self) -> int:
        """Distinct watched units: each unit seen in both arms counted once."""
        return max(self.watched - self.both_arms, 0)

    def converted(self, name: str | None) -> FlagAggregates:
        """Both arms as a guardrail on conversion ``name`` reads them (see
        :meth:`ArmAggregate.converted`)."""
        if name is None:
            return self
        return replace(
            self, treatment=self.treatment.converted(name), control=self.control.converted(name)
        )
