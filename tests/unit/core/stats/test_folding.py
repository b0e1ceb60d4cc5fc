"""Folding, the histogram and bucketing: pure functions, tables of cases."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import mmh3
import orjson
import pytest

from controller.core.common import histogram
from controller.core.stats import aggregates, units
from controller.core.stats.aggregates import CellDelta, CellKey
from controller.core.stats.folding import fold
from controller.core.wire.bucketing import BUCKETS, assign, bucket
from controller.core.wire.decoding import InEvent, Rejection, decode_event
from controller.core.wire.messages import Arm


def ev(kind: str, unit: str, arm: str = "treatment", version: int = 1, **extra: object) -> InEvent:
    body = {"type": kind, "v": 1, "id": "x", "ts": 0, "flag": "f", "unit": unit, "arm": arm}
    decoded = decode_event(orjson.dumps({**body, "flag_version": version, **extra}), max_bytes=9999)
    assert not isinstance(decoded, Rejection), decoded
    return decoded


T1 = ("f", 1, Arm.TREATMENT)
C1: CellKey = ("f", 1, Arm.CONTROL)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([], {}),
        ([ev("exposure", "a")], {T1: CellDelta(exp=1, units={"a"})}),
        (
            [ev("exposure", "a"), ev("exposure", "a"), ev("exposure", "b", arm="control")],
            {T1: CellDelta(exp=2, units={"a"}), C1: CellDelta(exp=1, units={"b"})},
        ),
        (
            [ev("request", "a", error=True, latency_ms=1.0), ev("request", "b", error=False)],
            {
                T1: CellDelta(
                    req=2,
                    err=1,
                    lat_n=1,
                    lat_sum=1.0,
                    hist={histogram.bucket_of(1.0): 1},
                    units={"a", "b"},
                    unit_requests={"a": 1, "b": 1},
                    unit_errors={"a": 1},
                )
            },
        ),
        (
            [
                ev("conversion", "a", value=2.0),
                ev("conversion", "a"),
                ev("conversion", "c", value=-1),
            ],
            {T1: CellDelta(conv=3, cv_n=2, cv_sum=1.0, cv_sq=5.0, units={"a", "c"})},
        ),
        (
            [
                ev("exception", "a", failure="KeyError in cart.py:price", example="KeyError: 'id'"),
                ev("crash", "b", failure="OOM in cache.go:grow"),
                ev("exception", "a"),
            ],
            {
                T1: CellDelta(
                    failures=3,
                    units={"a", "b"},
                    failed=[
                        ("KeyError in cart.py:price", "KeyError: 'id'", units.unit_bucket("a")),
                        ("OOM in cache.go:grow", None, units.unit_bucket("b")),
                    ],
                )
            },
        ),
        (
            [
                ev("request", "a", error=True, failure="5xx GET /cart/{id}"),
                ev("request", "b", error=True),
                ev("request", "b", error=False, failure="5xx GET /cart/{id}"),
                ev("request", "c", error=True, failure="4xx POST /pay"),
                ev("exception", "a", failure="KeyError in cart.py:price"),
            ],
            {
                T1: CellDelta(
                    req=4,
                    err=3,
                    failures=1,
                    units={"a", "b", "c"},
                    unit_requests={"a": 1, "b": 2, "c": 1},
                    unit_errors={"a": 1, "b": 1, "c": 1},
                    failed=[("KeyError in cart.py:price", None, units.unit_bucket("a"))],
                    # a name on a request that did not fail is not read
                    failed_requests=[
                        ("5xx GET /cart/{id}", units.unit_bucket("a")),
                        ("4xx POST /pay", units.unit_bucket("c")),
                    ],
                )
            },
        ),
        (
            [ev("exposure", "a", version=1), ev("exposure", "a", version=2)],
            {
                T1: CellDelta(exp=1, units={"a"}),
                ("f", 2, Arm.TREATMENT): CellDelta(exp=1, units={"a"}),
            },
        ),
    ],
)
def test_fold(events: list[InEvent], expected: dict[CellKey, CellDelta]) -> None:
    cells: dict[CellKey, CellDelta] = {}
    fold(events, cells)
    assert without_buckets(cells) == expected


def without_buckets(cells: dict[CellKey, CellDelta]) -> dict[CellKey, CellDelta]:
    """The cells with their unit buckets left out (tested on their own below)."""
    return {key: replace(cell, hits=[], sums={}, buckets={}) for key, cell in cells.items()}


@pytest.mark.parametrize("unit", ["a", "user-42", "été", "用户", "😀", "x" * 200])
def test_fold_counts_each_event_in_its_units_bucket(unit: str) -> None:
    events = [
        ev("exposure", unit),
        ev("request", unit, error=True, latency_ms=12.0),
        ev("conversion", unit, value=2.5),
    ]
    cells: dict[CellKey, CellDelta] = {}
    fold(events, cells)
    base = units.unit_bucket(unit) * units.KIND_COUNT
    latency = base + units.LATENCY + histogram.bucket_of(12.0) // units.FINE_PER_BIN
    kinds = (units.EXPOSURES, units.REQUESTS, units.ERRORS, units.CONVERSIONS, units.VALUES)
    assert cells[T1].bucket_counts() == {**{base + k: 1 for k in kinds}, latency: 1}
    assert cells[T1].bucket_sums() == {base + units.VALUE_SUM: 2.5}


def test_unit_buckets_given_whole_count_with_folded_ones() -> None:
    value = units.VALUE_SUM  # the first bucket's float slot
    cell = CellDelta(hits=[3, 3, 6], sums={value: 1.5}, buckets={3: 2.0, value: 0.5, 40: 0.0})
    assert cell.bucket_counts() == {3: 4, 6: 1}
    assert cell.bucket_sums() == {value: 2.0}
    assert cell.counters() == {units.slot_field(3): 4, units.slot_field(6): 1}
    assert cell.floats() == {units.slot_field(value): 2.0}


def test_cell_fields_match_store_names() -> None:
    cell = CellDelta(exp=1, req=2, err=1, hist={3: 4}, lat_sum=2.5)
    assert cell.counters() == {"exp": 1, "req": 2, "err": 1, "h3": 4}
    assert cell.floats() == {"lat_sum": 2.5}


@pytest.mark.parametrize(
    ("latency_ms", "index"),
    [
        (0.0, 0),
        (0.0999, 0),
        (0.1, 1),
        (0.11, 1),
        (0.1 * 10 ** (1 / 20), 2),
        (1.0, 21),
        (1000.0, 81),
        (60_000.0, 116),
        (63_095.8, 117),
        (1e9, 117),
    ],
)
def test_histogram_bucket_of(latency_ms: float, index: int) -> None:
    assert histogram.bucket_of(latency_ms) == index
    low, high = histogram.bucket_bounds(index)
    assert low <= latency_ms < high


def test_histogram_edges_cover_documented_range() -> None:
    assert histogram.BUCKET_COUNT == 118
    assert histogram.EDGES_MS[0] == pytest.approx(0.1)
    assert histogram.EDGES_MS[-2] < 60_000 <= histogram.EDGES_MS[-1]
    ratios = {
        round(b / a, 9) for a, b in zip(histogram.EDGES_MS, histogram.EDGES_MS[1:], strict=False)
    }
    assert ratios == {round(10 ** (1 / 20), 9)}
    with pytest.raises(ValueError, match="outside"):
        histogram.bucket_bounds(118)
    assert math.isinf(histogram.bucket_bounds(117)[1])


def test_bucket_is_murmur3_of_flag_salt_unit() -> None:
    # Reference values of murmur3_x86_32(seed=0), unsigned, from the published test vectors.
    assert mmh3.hash("", seed=0, signed=False) == 0
    assert mmh3.hash("hello", seed=0, signed=False) == 613153351
    assert (
        bucket("checkout", "s1", "user-1")
        == mmh3.hash("checkout:s1:user-1", signed=False) % BUCKETS
    )


@pytest.mark.parametrize(
    ("percent", "threshold"), [(0, 0), (0.001, 1), (1, 1000), (25.5, 25500), (100, 100_000)]
)
def test_assign_threshold(percent: float, threshold: int) -> None:
    units = [f"u{i}" for i in range(2000)]
    treated = {u for u in units if assign("f", "s", u, percent) is Arm.TREATMENT}
    assert treated == {u for u in units if bucket("f", "s", u) < threshold}


def test_raising_percent_only_moves_control_to_treatment() -> None:
    units = [f"u{i}" for i in range(5000)]
    previous: set[str] = set()
    for percent in (1, 5, 25, 50, 100):
        treated = {u for u in units if assign("flag", "salt", u, percent) is Arm.TREATMENT}
        assert previous <= treated
        assert abs(len(treated) / len(units) - percent / 100) < 0.03
        previous = treated


@pytest.mark.parametrize("percent", [-0.1, 100.001])
def test_assign_rejects_out_of_range_percent(percent: float) -> None:
    with pytest.raises(ValueError, match="percent"):
        assign("f", "s", "u", percent)


# The watched sample: one unit in four, drawn by hash


@pytest.mark.parametrize(
    "ids",
    [
        [f"user-{n}" for n in range(40_000)],  # sequential ids, one digit apart
        [f"{n:032x}" for n in range(0, 40_000 * 7919, 7919)],  # hex keys of one length
        [f"tenant-{n % 50}/user-{n}" for n in range(40_000)],  # ids with a shared prefix
    ],
    ids=["sequential", "hex", "prefixed"],
)
def test_the_watched_sample_draws_one_unit_in_four_over_every_bucket(ids: list[str]) -> None:
    drawn = aggregates.watched_members(ids)
    share = len(drawn) / len(ids)
    assert abs(share - 0.25) < 0.01, share
    assert len(set(drawn)) == len(drawn), "no two units share a member"
    members = dict(zip(drawn, [u for u in ids if aggregates.watched_members([u])], strict=True))
    per_bucket = Counter(units.unit_bucket(unit) for unit in members.values())
    assert len(per_bucket) == units.UNIT_BUCKETS
    assert min(per_bucket.values()) > 0.6 * len(drawn) / units.UNIT_BUCKETS


@pytest.mark.parametrize("unit", ["u2", "user-7", "ünit-ñ3", "日本-10", "\ud800-lone", "x" * 256])
def test_a_drawn_unit_is_the_canonical_text_of_a_signed_64_bit_integer(unit: str) -> None:
    drawn = aggregates.watched_members([unit] * 3)
    assert len(drawn) == 3
    assert drawn == aggregates.watched_members([unit] * 3), "the same draw on every flush"
    for member in drawn:
        assert str(int(member)) == member  # what Redis keeps in an integer set
        assert -(2**63) <= int(member) < 2**63


def test_a_named_failed_request_counts_as_an_error_and_no_exception() -> None:
    cells: dict[CellKey, CellDelta] = {}
    fold([ev("request", "a", error=True, failure="5xx GET /cart/{id}")], cells)
    base = units.unit_bucket("a") * units.KIND_COUNT
    assert cells[T1].bucket_counts() == {base + units.REQUESTS: 1, base + units.ERRORS: 1}
    assert (cells[T1].failures, cells[T1].failed) == (0, [])
