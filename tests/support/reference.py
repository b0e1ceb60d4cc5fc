"""Reference model and event generators shared by the integration tests."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mmh3
import orjson

from controller.core.common.histogram import BUCKET_COUNT, bucket_of
from controller.core.stats import HEAVIEST_KEPT, Heaviest, UnitCount, merged, units
from controller.core.stats.aggregates import ArmAggregate, Conversions, watched_members
from controller.core.stats.units import UnitBuckets


def make_event(
    rng: random.Random,
    i: int,
    *,
    flags: int = 3,
    units: int = 200,
    versions: int = 3,
    error_rate: float = 0.1,
    names: Sequence[str] = (),
) -> dict[str, Any]:
    """One random valid event; ``i`` makes its id unique.

    With ``names``, a conversion is named by one of them or, as often as by each, by none
    (without, no more is drawn than before, so seeded streams are as they were).
    """
    kind = rng.choice(("exposure", "request", "request", "conversion"))
    body: dict[str, Any] = {
        "type": kind,
        "v": 1,
        "id": f"e{i}",
        "ts": 1_763_780_000_000 + i,
        "flag": f"flag-{rng.randrange(flags)}",
        "unit": f"u{rng.randrange(units)}",
        "arm": rng.choice(("treatment", "control")),
        "flag_version": rng.randrange(1, versions + 1),
    }
    if kind == "request":
        body["error"] = rng.random() < error_rate
        if rng.random() < 0.9:
            body["latency_ms"] = round(rng.lognormvariate(3, 1), 3)
    elif kind == "conversion" and rng.random() < 0.7:
        body["value"] = round(rng.uniform(0, 100), 2)
    if kind == "conversion" and names:
        name = rng.choice([*names, None])
        if name is not None:
            body["name"] = name
    return body


def encode(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


@dataclass
class StubRecord:
    """A record as the events consumer hands it to ingest, without a broker."""

    value: bytes | None
    offset: int
    topic: str = "events"
    partition: int = 0
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()


def partition_of(unit: str, partitions: int) -> int:
    """A stable unit -> partition map for tests that place events themselves."""
    return mmh3.hash(unit, signed=False) % partitions


@dataclass
class _Arm:
    exposures: int = 0
    requests: int = 0
    errors: int = 0
    latency_count: int = 0
    latency_sum_ms: float = 0.0
    conversions: int = 0
    conversion_values: int = 0
    conversion_value_sum: float = 0.0
    conversion_value_sq: float = 0.0

    def __post_init__(self) -> None:
        self.hist = [0] * BUCKET_COUNT
        self.units: set[str] = set()
        self.named: dict[str, Conversions] = {}
        self.slots = [0.0] * (units.UNIT_BUCKETS * units.KIND_COUNT)
        self.unit_requests: Counter[str] = Counter()
        self.unit_errors: Counter[str] = Counter()

    def count(self, unit: str, kind: int, by: float = 1.0) -> None:
        """Add to the unit's bucket's ``kind`` (:mod:`controller.core.stats.units`)."""
        self.slots[units.unit_bucket(unit) * units.KIND_COUNT + kind] += by


def reference_fold(events: list[dict[str, Any]]) -> dict[tuple[str, int, str], _Arm]:
    """The obvious, slow fold the store must agree with."""
    cells: dict[tuple[str, int, str], _Arm] = defaultdict(_Arm)
    for e in events:
        cell = cells[(e["flag"], e["flag_version"], e["arm"])]
        cell.units.add(e["unit"])
        unit = e["unit"]
        if e["type"] == "exposure":
            cell.exposures += 1
            cell.count(unit, units.EXPOSURES)
        elif e["type"] == "request":
            cell.requests += 1
            cell.errors += int(e["error"])
            cell.count(unit, units.REQUESTS)
            cell.count(unit, units.ERRORS, int(e["error"]))
            cell.unit_requests[unit] += 1
            cell.unit_errors[unit] += int(e["error"])
            if e.get("latency_ms") is not None:
                cell.latency_count += 1
                cell.latency_sum_ms += e["latency_ms"]
                cell.hist[bucket_of(e["latency_ms"])] += 1
                coarse = bucket_of(e["latency_ms"]) // units.FINE_PER_BIN
                cell.count(unit, units.LATENCY + coarse)
        elif e["type"] in ("crash", "exception"):
            cell.count(unit, units.EXCEPTIONS)
            cell.count(unit, units.CRASHES, int(e["type"] == "crash"))
        else:
            cell.conversions += 1
            cell.count(unit, units.CONVERSIONS)
            value = e.get("value")
            if value is not None:
                cell.conversion_values += 1
                cell.conversion_value_sum += value
                cell.conversion_value_sq += value**2
                cell.count(unit, units.VALUES)
                cell.count(unit, units.VALUE_SUM, value)
            if e.get("name") is not None:
                one = (
                    Conversions(1, 0, 0.0, 0.0)
                    if value is None
                    else Conversions(1, 1, value, value**2)
                )
                cell.named[e["name"]] = cell.named.get(e["name"], Conversions()).plus(one)
    return cells


def expected_arm(
    cells: dict[tuple[str, int, str], _Arm], flag: str, versions: set[int], arm: str
) -> tuple[ArmAggregate, int]:
    """The aggregate a read must return, and the exact number of unique units."""
    parts = [c for (f, v, a), c in cells.items() if f == flag and v in versions and a == arm]
    seen = set().union(*(c.units for c in parts)) if parts else set()
    hist = [sum(c.hist[i] for c in parts) for i in range(BUCKET_COUNT)]
    agg = ArmAggregate(
        exposures=sum(c.exposures for c in parts),
        units=len(seen),
        requests=sum(c.requests for c in parts),
        errors=sum(c.errors for c in parts),
        latency_count=sum(c.latency_count for c in parts),
        latency_sum_ms=sum(c.latency_sum_ms for c in parts),
        latency_histogram=tuple(hist),
        conversions=sum(c.conversions for c in parts),
        conversion_values=sum(c.conversion_values for c in parts),
        conversion_value_sum=sum(c.conversion_value_sum for c in parts),
        conversion_value_sq=sum(c.conversion_value_sq for c in parts),
        named=_named(parts),
        heaviest=_every_unit(parts),
        buckets=UnitBuckets(
            tuple(math.fsum(column) for column in zip(*(c.slots for c in parts), strict=True))
        )
        if parts
        else UnitBuckets.empty(),
    )
    return agg, len(seen)


def _every_unit(parts: list[_Arm]) -> Heaviest:
    """Every unit that sent a request, with its exact counts (a read lists the heaviest)."""
    requests: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for part in parts:
        requests.update(part.unit_requests)
        errors.update(part.unit_errors)
    return merged(
        [Heaviest(tuple(UnitCount(u, n, errors[u]) for u, n in requests.items()))],
        keep=len(requests),
    )


def assert_heaviest(got: Heaviest, every: Heaviest, *, where: str) -> None:
    """A read's heaviest units against every unit's exact counts: each listed unit's counts at
    most its own and short of them by at most the bound said; no unit left out heavier than
    the last listed of a full list by more than that bound (of a short one, than the bound:
    a unit the store did not keep); all of them, exactly, where the bound is 0 and the list
    has room. The requests of units not kept are within the bound and the requests sent."""
    exact = {c.unit: c for c in every.units}
    bound = got.unlisted_at_most
    unkept = got.unkept_requests
    assert 0 <= unkept <= min(bound, sum(c.requests for c in exact.values())), f"{where}: {unkept}"
    for count in got.units:
        own = exact.get(count.unit)
        assert own is not None, f"{where}: {count.unit} listed, never sent a request"
        assert own.requests - bound <= count.requests <= own.requests, f"{where}: {count}"
        assert count.errors <= own.errors, f"{where}: {count}"
        if bound == 0:
            assert count == own, f"{where}: {count} != {own}"
    listed = {c.unit for c in got.units}
    full = len(got.units) == HEAVIEST_KEPT
    floor = got.units[-1].requests if full else 0
    for unit, own in exact.items():
        if unit not in listed:
            assert full or bound > 0, f"{where}: {unit} left out of a short list"
            assert own.requests <= floor + bound, f"{where}: {unit} outweighs the list"


def _named(parts: list[_Arm]) -> dict[str, Conversions]:
    named: dict[str, Conversions] = {}
    for part in parts:
        for name, counted in part.named.items():
            named[name] = named.get(name, Conversions()).plus(counted)
    return named


def expected_watch(events: list[dict[str, Any]], flag: str, versions: set[int]) -> tuple[int, int]:
    """Watched units of ``flag`` under ``versions``, once per (version, arm) they were seen
    in, and how many of them were seen in both arms of one version (while the sample is below
    its cap, every unit drawn into it is watched)."""
    drawn = {e["unit"] for e in events if watched_members([e["unit"]])}
    seen = {
        (e["flag_version"], e["unit"], e["arm"])
        for e in events
        if e["flag"] == flag and e["flag_version"] in versions and e["unit"] in drawn
    }
    units = {(version, unit) for version, unit, _ in seen}
    return len(seen), len(seen) - len(units)


FLOAT_FIELDS = ("latency_sum_ms", "conversion_value_sum", "conversion_value_sq")


def assert_arm_equal(got: ArmAggregate, want: ArmAggregate, *, where: str) -> None:
    """Counters exactly, float sums to 1e-9 relative, unique units within HyperLogLog error."""
    for name in ArmAggregate.__dataclass_fields__:
        g, w = getattr(got, name), getattr(want, name)
        if name in FLOAT_FIELDS:
            assert abs(g - w) <= 1e-9 * max(1.0, abs(w)), f"{where}.{name}: {g} != {w}"
        elif name == "named":
            assert g.keys() == w.keys(), f"{where}.named: {sorted(g)} != {sorted(w)}"
            for conversion in w:
                _assert_named_equal(g[conversion], w[conversion], where=f"{where}.{conversion}")
        elif name == "buckets":
            _assert_buckets_equal(g, w, where=f"{where}.buckets")
        elif name == "heaviest":
            assert_heaviest(g, w, where=f"{where}.heaviest")
        elif name == "units":
            # HyperLogLog: Redis counts 7 distinct units as 6 (seen), and a read sums
            # one estimate per partition, so small counts may be off by a few.
            assert abs(g - w) <= max(3, round(0.03 * w)), f"{where}.units: {g} vs {w}"
        else:
            assert g == w, f"{where}.{name}: {g} != {w}"


def _assert_buckets_equal(got: UnitBuckets | None, want: UnitBuckets | None, *, where: str) -> None:
    """Unit buckets: counts exactly, the value sums to 1e-9 relative (an empty one is None)."""
    g = got.totals if got is not None else UnitBuckets.empty().totals
    w = want.totals if want is not None else UnitBuckets.empty().totals
    for slot, (a, b) in enumerate(zip(g, w, strict=True)):
        field = units.slot_field(slot)
        assert abs(a - b) <= 1e-9 * max(1.0, abs(b)), f"{where}.{field}: {a} != {b}"


def _assert_named_equal(got: Conversions, want: Conversions, *, where: str) -> None:
    """A named conversion's counts exactly, its sums to 1e-9 relative."""
    assert (got.count, got.values) == (want.count, want.values), f"{where}: {got} != {want}"
    for g, w in ((got.value_sum, want.value_sum), (got.value_sq, want.value_sq)):
        assert abs(g - w) <= 1e-9 * max(1.0, abs(w)), f"{where}: {got} != {want}"
