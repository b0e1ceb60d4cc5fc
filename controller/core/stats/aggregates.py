"""Per-arm aggregates: what ingest accumulates and the gates read.

A :class:`CellDelta` is the increment that one batch adds for one
(flag, flag_version, arm); an :class:`ArmAggregate` is the sum that a read
returns. Both use the same field names as the store's hash fields.

Units seen in both arms (#28) are counted on a bounded sample: the first
units of each flag version. The store keeps the units of each (partition,
flag version, arm) in a set and, as a flush adds a unit to one arm's set,
counts it if the other arm's set already holds it; once either arm's set of
a version holds :data:`WATCH_CAP` units, the version's sample is full and
stops growing in both arms. The counts (:data:`WATCHED_FIELD` and
:data:`BOTH_FIELD` in each arm's hash) are written by the same atomic flush
as the aggregates, so they are exactly once with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.core.common import BUCKET_COUNT

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


CellKey = tuple[str, int, str]
"""Where an event is counted: (flag, flag_version, arm). Ingest needs no rollout
state to compute it. A plain tuple because it is built once per event; an
:class:`Arm` member equals and hashes like its string value."""


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

    def counters(self) -> dict[str, int]:
        """Non-zero integer increments by store field name, histogram included."""
        out = {name: getattr(self, name) for name in COUNTER_FIELDS if getattr(self, name)}
        out.update({f"{HIST_PREFIX}{i}": n for i, n in self.hist.items()})
        return out

    def floats(self) -> dict[str, float]:
        """Non-zero float increments by store field name."""
        return {name: getattr(self, name) for name in FLOAT_FIELDS if getattr(self, name)}


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

    @classmethod
    def from_fields(cls, fields: dict[str, float], *, units: int) -> ArmAggregate:
        """Build from summed store fields (missing fields count as zero)."""
        hist = [0] * BUCKET_COUNT
        for name, value in fields.items():
            if name.startswith(HIST_PREFIX) and name[1:].isdigit():
                hist[int(name[1:])] = int(value)
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
        )


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
