"""The native decode and fold of a span answers what the Python path answers, to the last bit.

Each span here (the benchmark's events, generated ones of every type, hostile values in a
span of valid ones) is offered to the native extension on a delta, and folded on a copy of
that delta by the Python path (:meth:`EventDecoder.decode_many` and ``fold``). Where the
extension answers, both deltas must be equal in everything the flush reads (counters,
float sums compared by their bits, histogram, units, each unit's requests and errors in
order, named conversions in order, failures and failed requests named in order, unit
buckets, ids, cells in order); where it does not,
the delta must be as it was. Where the extension is not installed they skip with SERVICE
MISSING, and fail under CI (``make native`` builds it).
"""

from __future__ import annotations

import copy
import random
import zlib
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.core.stats.aggregates import CellDelta
from controller.core.stats.folding import PartitionDelta, Seen, fold
from controller.core.stats.units import UNIT_BUCKETS
from controller.core.wire.decoding import EventDecoder, Rejection, RejectReason
from controller.daemon.ingest.batches import Folder
from controller.daemon.ingest.native_fold import NativeFolder, native_folder
from controller.ports import DeadLetter, Record
from tests.support.reference import StubRecord, encode, make_event
from tests.unit.core.wire.test_decoding import event

pytestmark = pytest.mark.usefixtures("fold_native")

MAX_BYTES = 65_536


def cell_view(cell: CellDelta) -> tuple[Any, ...]:
    """Everything of a cell the flush reads, floats as their bits, orders where they count."""
    floats = (cell.lat_sum, cell.cv_sum, cell.cv_sq)
    return (
        (cell.exp, cell.req, cell.err, cell.lat_n, cell.conv, cell.cv_n, cell.failures),
        tuple(x.hex() for x in floats),
        list(cell.hist.items()),
        sorted(cell.units),
        list(cell.unit_requests.items()),
        list(cell.unit_errors.items()),
        [(k, n.conv, n.cv_n, n.cv_sum.hex(), n.cv_sq.hex()) for k, n in cell.named.items()],
        type(cell.failed),
        [(type(f), *f, type(f[0]), type(f[1]), type(f[2])) for f in cell.failed],
        type(cell.failed_requests),
        [(type(f), *f, type(f[0]), type(f[1])) for f in cell.failed_requests],
        sorted(cell.bucket_counts().items()),
        sorted((slot, x.hex()) for slot, x in cell.bucket_sums().items()),
        sorted(cell.counters().items()),
        sorted((k, x.hex()) for k, x in cell.floats().items()),
    )


def view(delta: PartitionDelta) -> tuple[Any, ...]:
    cells = [(key, cell_view(cell)) for key, cell in delta.cells.items()]
    return cells, sorted(delta.seen.ids), delta.seen.repeats, dict(delta.rejects)


def folder() -> NativeFolder:
    found = native_folder(MAX_BYTES)
    assert found is not None
    return found


def python_fold(values: list[bytes | None], delta: PartitionDelta) -> bool:
    """The Python path's batch fold; False where it would take the per-record path."""
    decoder = EventDecoder(max_bytes=MAX_BYTES)
    events = decoder.decode_many(values)
    if events is None:
        return False
    return fold(events, delta.cells, flag_ok=decoder.flag_ok, seen=delta.seen) is None


def same_or_untouched(values: list[bytes | None], delta: PartitionDelta) -> bool:
    """Offer ``values`` to the extension on ``delta`` and check it against the Python path;
    whether the extension answered."""
    before = view(delta)
    reference = copy.deepcopy(delta)
    decoder = EventDecoder(max_bytes=MAX_BYTES)
    answered = folder().fold(values, delta.cells, delta.seen.ids, decoder.flag_ok)
    if answered:
        assert python_fold(values, reference), "answered where the Python path does not"
        assert view(delta) == view(reference)
    else:
        assert view(delta) == before
    return answered


def started(seed: int = 3, n: int = 60) -> PartitionDelta:
    """A delta with cells already holding counts and non-zero sums, as a later batch finds it."""
    delta = PartitionDelta(partition=0, next_offset=0, seen=Seen.skipping(frozenset({"k1"})))
    assert python_fold(bench_events(n, seed=seed, first=10_000), delta)
    return delta


def bench_events(n: int, *, seed: int = 1, first: int = 0) -> list[bytes | None]:
    rng = random.Random(seed)
    names = ("checkout", "signup.done", "a:b-c_d")
    return [
        encode(make_event(rng, first + i, flags=4, units=300, versions=2, names=names))
        for i in range(n)
    ]


def test_the_benchmarks_events_are_folded_natively_as_python_folds_them() -> None:
    rng = random.Random(1)
    values: list[bytes | None] = [
        encode(make_event(rng, i, flags=20, units=200_000, versions=1, error_rate=0.02))
        for i in range(3000)
    ]
    assert same_or_untouched(values, PartitionDelta(partition=0, next_offset=0))
    assert same_or_untouched(bench_events(500), started())


def test_spans_folded_one_after_another_into_one_delta() -> None:
    native, reference = started(), started()
    decoder = EventDecoder(max_bytes=MAX_BYTES)
    for span in range(6):
        values = bench_events(200, seed=span, first=span * 1000)
        assert folder().fold(values, native.cells, native.seen.ids, decoder.flag_ok)
        assert python_fold(values, reference)
    assert view(native) == view(reference)


def failing(id: str, **own: Any) -> bytes:
    """An exception event (``type="crash"``: a crash) with ``own`` fields."""
    return orjson.dumps(event(**{"id": id, "type": "exception", "error": ..., "latency_ms": ...,
                                 **own}))  # fmt: skip


RAW: dict[str, tuple[bytes | None, bool]] = {
    # What the extension reads: the plain case, laid out otherwise.
    "type last, spaces around": (b' \n{ "v" : 1 ,"id":"s1","ts":0,"flag":"f","unit":"u",'
    b'"arm":"control","flag_version":0,"type":"exposure"}\t\r\n', True),
    "256 code points of unit": (orjson.dumps(event(id="s2", unit="é" * 256)), True),
    "cohort null": (orjson.dumps(event(id="s3", cohort=None)), True),
    "cohort compared": (orjson.dumps(event(id="s4", cohort="compared")), True),
    "cohort holdout": (orjson.dumps(event(id="s5", cohort="holdout")), True),
    "latency -0": (b'{"type":"request","v":1,"id":"s6","ts":1,"flag":"f","unit":"u",'
    b'"arm":"control","flag_version":1,"error":true,"latency_ms":-0}', True),
    "latency -0.0": (orjson.dumps(event(id="s7", latency_ms=-0.0)), True),
    "latency null": (orjson.dumps(event(id="s8", latency_ms=None)), True),
    "latency as an integer": (orjson.dumps(event(id="s9", latency_ms=86_400_000)), True),
    "value with an exponent": (orjson.dumps(event(id="s10", type="conversion", error=...,
    latency_ms=..., value=1.5e-7, name="n")), True),
    "name null": (orjson.dumps(event(id="s11", type="conversion", error=..., latency_ms=...,
    name=None)), True),
    "DEL in a unit": (orjson.dumps(event(id="s12", unit="a\x7fb")), True),
    # What it leaves to the Python path.
    "no value": (None, False),
    "empty": (b"", False),
    "oversize": (orjson.dumps(event(id="s13")) + b" " * MAX_BYTES, False),
    "escape in a string": (orjson.dumps(event(id="s14", unit="a\nb")), False),
    "escaped key": (orjson.dumps(event(id="s15"))[:-1] + b',"\\u0063ohort":null}', False),
    "unicode escape": (orjson.dumps(event(id="s16")).replace(b"user-42", b"\\u00e9"), False),
    "raw control character": (orjson.dumps(event(id="s17")).replace(b"user-42", b"a\x01"), False),
    "not UTF-8": (orjson.dumps(event(id="s18")).replace(b"user-42", b"\xff\xfe"), False),
    "surrogate as UTF-8": (orjson.dumps(event(id="s19")).replace(b"user-42", b"\xed\xa0\x80"),
    False),
    "repeated key": (orjson.dumps(event(id="s20"))[:-1] + b',"unit":"x"}', False),
    "unknown key": (orjson.dumps(event(id="s21", colour="red")), False),
    "missing key": (orjson.dumps(event(id="s22", error=...)), False),
    "key of another type": (orjson.dumps(event(id="s23", name="n")), False),
    "deep": (b"[" * 40 + b"]" * 40, False),
    "nested value": (orjson.dumps(event(id="s24", unit={"a": [1]})), False),
    "a list": (b"[" + orjson.dumps(event(id="s25")) + b"]", False),
    "trailing garbage": (orjson.dumps(event(id="s26")) + b" x", False),
    "two events": (orjson.dumps(event(id="s27")) + orjson.dumps(event(id="s28")), False),
    "BOM": (b"\xef\xbb\xbf" + orjson.dumps(event(id="s29")), False),
    "string ts": (orjson.dumps(event(id="s30", ts="2025-01-01T00:00:00Z")), False),
    "float ts": (orjson.dumps(event(id="s31", ts=1.5)), False),
    "negative ts": (orjson.dumps(event(id="s32", ts=-1)), False),
    "ts past the last instant": (orjson.dumps(event(id="s33", ts=253_402_300_800_000)), False),
    "ts beyond i64": (orjson.dumps(event(id="s34"))[:-1] + b',"ts":99999999999999999999}', False),
    "v 1.0": (orjson.dumps(event(id="s35", v=1.0)), False),
    "v 2": (orjson.dumps(event(id="s36", v=2)), False),
    "v true": (orjson.dumps(event(id="s37", v=True)), False),
    "arm sideways": (orjson.dumps(event(id="s38", arm="sideways")), False),
    "cohort unknown": (orjson.dumps(event(id="s39", cohort="others")), False),
    "flag too long": (orjson.dumps(event(id="s40", flag="f" * 162)), False),
    "flag the pattern refuses": (orjson.dumps(event(id="s41", flag="Bad Flag")), False),
    "flag with a final newline": (orjson.dumps(event(id="s42", flag="f\n")), False),
    "unit empty": (orjson.dumps(event(id="s43", unit="")), False),
    "unit of 257 code points": (orjson.dumps(event(id="s44", unit="é" * 257)), False),
    "id of 129": (orjson.dumps(event(id="i" * 129)), False),
    "version past 2**31 - 1": (orjson.dumps(event(id="s45", flag_version=2**31)), False),
    "version as a float": (orjson.dumps(event(id="s46", flag_version=3.0)), False),
    "error as 0": (orjson.dumps(event(id="s47", error=0)), False),
    "negative latency": (orjson.dumps(event(id="s48", latency_ms=-0.5)), False),
    "latency past a day": (orjson.dumps(event(id="s49", latency_ms=86_400_000.5)), False),
    "latency 1e400": (orjson.dumps(event(id="s50"))[:-1] + b',"latency_ms":1e400}', False),
    "latency NaN": (orjson.dumps(event(id="s51"))[:-1].replace(b"12.5", b"NaN") + b"}", False),
    "latency Infinity": (orjson.dumps(event(id="s52")).replace(b"12.5", b"Infinity"), False),
    "latency of 16 digits": (orjson.dumps(event(id="s53", latency_ms=0.1234567890123456)),
    False),
    "latency with a leading zero": (orjson.dumps(event(id="s54")).replace(b"12.5", b"012.5"),
    False),
    "latency 1.": (orjson.dumps(event(id="s55")).replace(b"12.5", b"1."), False),
    "latency .5": (orjson.dumps(event(id="s56")).replace(b"12.5", b".5"), False),
    "latency +1": (orjson.dumps(event(id="s57")).replace(b"12.5", b"+1"), False),
    "latency as a string": (orjson.dumps(event(id="s58", latency_ms="12.5")), False),
    "huge integer value": (orjson.dumps(event(id="s59", type="conversion", error=...,
    latency_ms=...)).replace(b"}", b',"value":123456789012345678901234567890}'), False),
    "value past its bound": (orjson.dumps(event(id="s60", type="conversion", error=...,
    latency_ms=..., value=1e9 + 1)), False),
    "name the pattern refuses": (orjson.dumps(event(id="s61", type="conversion", error=...,
    latency_ms=..., name="9lives")), False),
    "name with a final newline": (orjson.dumps(event(id="s62", type="conversion", error=...,
    latency_ms=..., name="n\n")), False),
    # A crash's or an exception's failure: its name of 1 to 256 code points, its example of
    # 0 to 2048, each optional, on those two types alone.
    "crash failing": (failing("s63", type="crash", failure="KeyError in cart.py:price",
    example="KeyError: 'cart_id'"), True),
    "exception failing, no example": (failing("s64", failure="5xx GET /cart/{id}"), True),
    "example empty": (failing("s65", failure="f", example=""), True),
    "example null": (failing("s66", failure="f", example=None), True),
    "failure null": (failing("s67", failure=None, example="e"), True),
    "example without a failure": (failing("s68", type="crash", example="e"), True),
    "failure of 256 code points": (failing("s69", failure="é" * 256, example="é" * 2048),
    True),
    "failure in a cohort": (failing("s70", type="crash", failure="Bus error", example="💥",
    cohort="holdout"), True),
    "failure empty": (failing("s71", failure=""), False),
    "failure of 257 code points": (failing("s72", failure="é" * 257), False),
    "example of 2049 code points": (failing("s73", failure="f", example="é" * 2049), False),
    "failure as a number": (failing("s74", failure=7), False),
    "example as false": (failing("s75", failure="f", example=False), False),
    "failure nested": (failing("s76", failure=["f"]), False),
    "failure with an escape": (failing("s77", failure="Error in\nmain"), False),
    "example with an escape": (failing("s78", failure="f", example='say "hi"'), False),
    "example on a request": (orjson.dumps(event(id="s80", example="e")), False),
    "failure on an exposure": (orjson.dumps(event(id="s81", type="exposure", error=...,
    latency_ms=..., failure="f")), False),
    "failure on a conversion": (orjson.dumps(event(id="s82", type="conversion", error=...,
    latency_ms=..., failure="f")), False),
    # A failed request's name: 1 to 256 code points, optional, read where it failed.
    "request failing": (orjson.dumps(event(id="s83", error=True, failure="5xx GET /cart/{id}")),
    True),
    "failure on a request that did not fail": (orjson.dumps(event(id="s84", failure="f")), True),
    "request failure null": (orjson.dumps(event(id="s85", error=True, failure=None)), True),
    "request failure of 256 code points": (orjson.dumps(event(id="s86", error=True,
    failure="é" * 256)), True),
    "request failure in a cohort": (orjson.dumps(event(id="s87", error=True, failure="4xx /x",
    cohort="carried")), True),
    "request failure empty": (orjson.dumps(event(id="s88", error=True, failure="")), False),
    "request failure of 257 code points": (orjson.dumps(event(id="s89", error=True,
    failure="é" * 257)), False),
    "request failure as a number": (orjson.dumps(event(id="s90", error=True, failure=500)),
    False),
    "request failure with an escape": (orjson.dumps(event(id="s91", error=True,
    failure="5xx\tGET")), False),
    "request failure on a success, empty": (orjson.dumps(event(id="s92", failure="")), False),
    "known id": (orjson.dumps(event(id="k1")), False),
    "id folded before": (orjson.dumps(event(id="e10000")), False),
    "id repeated in the span": (orjson.dumps(event(id="e3")), False),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(RAW))
def test_one_odd_value_in_a_span(case: str) -> None:
    raw, read = RAW[case]
    values = bench_events(20)
    values[7] = raw
    assert same_or_untouched(values, started()) is read


def test_every_value_of_a_span_that_is_read_is_needed() -> None:
    # The span of every readable case at once, then of every case: the first is read whole.
    readable = [raw for raw, read in RAW.values() if read]
    assert same_or_untouched([*bench_events(5), *readable], started())
    assert not same_or_untouched([raw for raw, _ in RAW.values()], started())


Said = tuple[str, str, bool, str]
"""An event as a unit-count case writes it: kind, unit, error, and arm or cohort."""
Counted = dict[str, tuple[list[tuple[str, int]], list[tuple[str, int]]]]
"""Per cell (by its arm or cohort): its ``unit_requests`` and ``unit_errors``, in order."""

UNIT_COUNTS: dict[str, tuple[list[list[Said]], Counted]] = {
    "repeated units, errors and every kind in one span": (
        [[
            ("exposure", "a", False, "treatment"),
            ("request", "b", False, "treatment"),
            ("request", "a", True, "treatment"),
            ("conversion", "a", False, "treatment"),
            ("crash", "c", False, "treatment"),
            ("exception", "b", False, "treatment"),
            ("request", "a", False, "treatment"),
            ("request", "b", True, "treatment"),
            ("request", "a", True, "treatment"),
            ("request", "c", False, "treatment"),
            ("exposure", "d", False, "treatment"),
            ("conversion", "d", False, "treatment"),
        ]],
        {"treatment": ([("b", 2), ("a", 3), ("c", 1)], [("a", 2), ("b", 1)])},
    ),
    "one unit in both arms and a cohort": (
        [[
            ("request", "a", True, "treatment"),
            ("request", "a", False, "control"),
            ("request", "a", False, "holdout"),
            ("request", "a", True, "holdout"),
            ("request", "b", False, "control"),
            ("request", "a", False, "control"),
        ]],
        {
            "treatment": ([("a", 1)], [("a", 1)]),
            "control": ([("a", 2), ("b", 1)], []),
            "holdout": ([("a", 2)], [("a", 1)]),
        },
    ),
    "a cell folded by two calls": (
        [
            [("request", "a", False, "control"), ("request", "b", True, "control")],
            [
                ("exposure", "c", False, "control"),
                ("request", "b", False, "control"),
                ("request", "a", True, "control"),
                ("request", "c", True, "control"),
                ("request", "c", False, "control"),
            ],
        ],
        {"control": ([("a", 2), ("b", 2), ("c", 2)], [("b", 1), ("a", 1), ("c", 1)])},
    ),
    "no requests": (
        [[("exposure", "a", False, "control"), ("conversion", "a", False, "control")]],
        {"control": ([], [])},
    ),
}  # fmt: skip


def said(spans: list[list[Said]], prefix: str = "u") -> list[list[bytes | None]]:
    """Each span's events as their records, ids in order over all spans."""
    out: list[list[bytes | None]] = []
    for span in spans:
        values: list[bytes | None] = []
        for kind, unit, error, label in span:
            own: dict[str, Any] = {"error": error} if kind == "request" else {"error": ...}
            if kind != "request":
                own["latency_ms"] = ...
            if label not in ("treatment", "control"):
                own |= {"arm": "control", "cohort": label}
            else:
                own["arm"] = label
            number = sum(map(len, out)) + len(values)
            raw = orjson.dumps(event(id=f"{prefix}{number}", type=kind, unit=unit, **own))
            values.append(raw)
        out.append(values)
    return out


@pytest.mark.parametrize("case", list(UNIT_COUNTS))
def test_each_units_requests_and_errors_are_counted_as_python_counts_them(case: str) -> None:
    spans, expected = UNIT_COUNTS[case]
    delta = PartitionDelta(partition=0, next_offset=0)
    for values in said(spans):
        assert same_or_untouched(values, delta)
    counted = {
        key[2]: (list(cell.unit_requests.items()), list(cell.unit_errors.items()))
        for key, cell in delta.cells.items()
    }
    assert counted == expected


@pytest.mark.parametrize("case", list(UNIT_COUNTS))
def test_unit_counts_are_added_to_those_a_cell_holds(case: str) -> None:
    delta = started()
    labels = ("treatment", "control", "holdout")
    before = [("request", u, u == "c", label) for label in labels for u in ("c", "a", "a")]
    for values in said([before], prefix="before"):
        assert python_fold(values, delta)
    for values in said(UNIT_COUNTS[case][0]):
        assert same_or_untouched(values, delta)


def test_a_cell_whose_unit_counts_are_not_a_dict_is_left_to_python() -> None:
    delta = PartitionDelta(partition=0, next_offset=0)
    first, second = said(UNIT_COUNTS["a cell folded by two calls"][0])
    assert same_or_untouched(first, delta)
    cell = delta.cells[("checkout.new-flow", 3, "control")]
    cell.unit_errors = Counter(cell.unit_errors)
    assert not same_or_untouched(second, delta)


REFUSED = (
    "failure empty",
    "failure of 257 code points",
    "example of 2049 code points",
    "failure as a number",
    "example as false",
    "failure nested",
    "example on a request",
    "request failure empty",
    "request failure of 257 code points",
    "request failure as a number",
    "request failure on a success, empty",
    "failure on an exposure",
    "failure on a conversion",
)
"""The cases of :data:`RAW` with a failure or an example the contract refuses."""


@pytest.mark.parametrize("case", REFUSED)
def test_a_failure_the_contract_refuses_is_refused_as_python_refuses_it(case: str) -> None:
    raw, _ = RAW[case]
    assert raw is not None
    decoder = EventDecoder(max_bytes=MAX_BYTES)
    assert decoder.decode_many([raw]) is None
    refused = decoder.decode(raw)
    assert isinstance(refused, Rejection)
    assert refused.reason is RejectReason.SCHEMA_VIOLATION
    # Through ingest's folder: the span left to the Python path, the record dead-lettered.
    values = bench_events(40)
    values[23] = raw
    records: list[Record] = [StubRecord(value, offset) for offset, value in enumerate(values)]
    folded: list[tuple[Any, list[tuple[int, str]]]] = []
    for native in (True, False):
        rejected: list[DeadLetter] = []
        into = started()
        Folder(max_event_bytes=MAX_BYTES, native=native).fold(0, records, rejected, into=into)
        folded.append((view(into), [(r.record.offset, str(r.reason)) for r in rejected]))
    assert folded[0] == folded[1]
    assert folded[0][1] == [(23, "schema_violation")]


Failing = tuple[str, str, str | None, str | None, str]
"""An event as a failure case writes it: kind, unit, failure, example (None: left out),
and arm or cohort."""


def failing_spans(spans: list[list[Failing]]) -> list[list[bytes | None]]:
    """Each span's events as their records, ids in order over all spans."""
    out: list[list[bytes | None]] = []
    number = 0
    for span in spans:
        values: list[bytes | None] = []
        for kind, unit, failure, example, label in span:
            own: dict[str, Any] = {"type": kind, "failure": failure, "example": example}
            if kind == "request":
                own = {"type": kind, "error": True}
            elif kind == "exposure":
                own = {"type": kind}
            own = {k: ... if v is None else v for k, v in own.items()}
            if label in ("treatment", "control"):
                own["arm"] = label
            else:
                own |= {"arm": "treatment", "cohort": label}
            values.append(failing(f"x{number}", unit=unit, **own))
            number += 1
        out.append(values)
    return out


def bucket(unit: str) -> int:
    return zlib.crc32(unit.encode()) % UNIT_BUCKETS


def test_failures_are_listed_in_their_cells_in_the_order_folded() -> None:
    spans: list[list[Failing]] = [
        [
            ("crash", "a", "SIGSEGV in libc", "Segmentation fault", "treatment"),
            ("request", "b", None, None, "treatment"),
            ("exception", "b", "KeyError in cart.py:price", "", "control"),
            ("exception", "c", None, "no name: not listed", "treatment"),
            ("exception", "ü", "Ошибка в модуле", "ключ «cart» 💥", "holdout"),
            ("crash", "a", "SIGSEGV in libc", None, "treatment"),
            ("exposure", "d", None, None, "control"),
            ("exception", "d", "TimeoutError in pay.py:charge", None, "compared"),
        ],
        [
            ("exception", "e", "5xx GET /cart/{id}", "upstream 503", "control"),
            ("crash", "a", "SIGSEGV in libc", "Segmentation fault", "treatment"),
            ("crash", "ü", "Ошибка в модуле", None, "holdout"),
        ],
    ]
    delta = started()
    before = {key: len(cell.failed) for key, cell in delta.cells.items()}
    for values in failing_spans(spans):
        assert same_or_untouched(values, delta)
    added = {
        key[2]: cell.failed[before.get(key, 0) :]
        for key, cell in delta.cells.items()
        if key[0] == "checkout.new-flow"
    }
    assert added == {
        "treatment": [
            ("SIGSEGV in libc", "Segmentation fault", bucket("a")),
            ("SIGSEGV in libc", None, bucket("a")),
            ("TimeoutError in pay.py:charge", None, bucket("d")),  # the compared cohort's
            ("SIGSEGV in libc", "Segmentation fault", bucket("a")),
        ],
        "control": [
            ("KeyError in cart.py:price", "", bucket("b")),
            ("5xx GET /cart/{id}", "upstream 503", bucket("e")),
        ],
        "holdout": [
            ("Ошибка в модуле", "ключ «cart» 💥", bucket("ü")),
            ("Ошибка в модуле", None, bucket("ü")),
        ],
    }


def test_failures_are_appended_to_those_a_cell_holds() -> None:
    delta = started()
    first, second = failing_spans(
        [
            [("crash", "a", "first", "one", "control")],
            [("exception", "b", "second", None, "control")],
        ]
    )
    assert python_fold(first, delta)
    assert same_or_untouched(second, delta)
    cell = delta.cells[("checkout.new-flow", 3, "control")]
    assert cell.failed == [("first", "one", bucket("a")), ("second", None, bucket("b"))]


def test_a_cell_whose_failures_are_not_a_list_is_left_to_python() -> None:
    delta = PartitionDelta(partition=0, next_offset=0)
    first, second = failing_spans(
        [
            [("crash", "a", "first", "one", "control")],
            [("exposure", "b", None, None, "control")],
        ]
    )
    assert same_or_untouched(first, delta)
    cell = delta.cells[("checkout.new-flow", 3, "control")]
    cell.failed = tuple(cell.failed)  # type: ignore[assignment]
    assert not same_or_untouched(second, delta)


Requested = tuple[str, bool, str | None, str]
"""A request as a failed-request case writes it: unit, error, failure (None: left out), and
arm or cohort."""


def request_spans(spans: list[list[Requested]]) -> list[list[bytes | None]]:
    """Each span's requests as their records, ids in order over all spans."""
    out: list[list[bytes | None]] = []
    for span in spans:
        values: list[bytes | None] = []
        for unit, error, failure, label in span:
            own: dict[str, Any] = {"error": error, "failure": ... if failure is None else failure}
            if label in ("treatment", "control"):
                own["arm"] = label
            else:
                own |= {"arm": "treatment", "cohort": label}
            number = sum(map(len, out)) + len(values)
            values.append(orjson.dumps(event(id=f"q{number}", unit=unit, **own)))
        out.append(values)
    return out


def test_failed_requests_are_listed_in_their_cells_in_the_order_folded() -> None:
    spans: list[list[Requested]] = [
        [
            ("a", True, "5xx GET /cart/{id}", "treatment"),
            ("b", True, None, "treatment"),
            ("b", False, "5xx GET /cart/{id}", "treatment"),  # not failed: not listed
            ("c", True, "4xx POST /pay", "control"),
            ("ü", True, "5xx GET /ключ/{id} 💥", "holdout"),
            ("a", True, "5xx GET /cart/{id}", "treatment"),
            ("d", True, "5xx PUT /cart", "compared"),
        ],
        [
            ("e", True, "5xx GET /cart/{id}", "control"),
            ("a", False, None, "treatment"),
            ("ü", True, "5xx GET /ключ/{id} 💥", "holdout"),
        ],
    ]
    delta = started()
    before = {key: len(cell.failed_requests) for key, cell in delta.cells.items()}
    for values in request_spans(spans):
        assert same_or_untouched(values, delta)
    added = {
        key[2]: cell.failed_requests[before.get(key, 0) :]
        for key, cell in delta.cells.items()
        if key[0] == "checkout.new-flow"
    }
    assert added == {
        "treatment": [
            ("5xx GET /cart/{id}", bucket("a")),
            ("5xx GET /cart/{id}", bucket("a")),
            ("5xx PUT /cart", bucket("d")),  # the compared cohort's
        ],
        "control": [("4xx POST /pay", bucket("c")), ("5xx GET /cart/{id}", bucket("e"))],
        "holdout": [("5xx GET /ключ/{id} 💥", bucket("ü"))] * 2,
    }
    # a failed request is no exception: none is listed with the crashes and exceptions
    assert all(cell.failed == [] for cell in delta.cells.values())


def test_failed_requests_are_appended_to_those_a_cell_holds() -> None:
    delta = started()
    first, second = request_spans(
        [[("a", True, "first", "control")], [("b", True, "second", "control")]]
    )
    assert python_fold(first, delta)
    assert same_or_untouched(second, delta)
    cell = delta.cells[("checkout.new-flow", 3, "control")]
    assert cell.failed_requests == [("first", bucket("a")), ("second", bucket("b"))]


def test_a_cell_whose_failed_requests_are_not_a_list_is_left_to_python() -> None:
    delta = PartitionDelta(partition=0, next_offset=0)
    first, second = request_spans(
        [[("a", True, "first", "control")], [("b", False, None, "control")]]
    )
    assert same_or_untouched(first, delta)
    cell = delta.cells[("checkout.new-flow", 3, "control")]
    cell.failed_requests = tuple(cell.failed_requests)  # type: ignore[assignment]
    assert not same_or_untouched(second, delta)


@st.composite
def literals(draw: st.DrawFn, most: int = 10**17) -> str:
    """A JSON number as apps write them: integers, decimals, exponents, up to 18 digits."""
    digits = draw(st.integers(min_value=0, max_value=most))
    point = draw(st.integers(min_value=0, max_value=8))
    text = str(digits).rjust(point + 1, "0")
    if point:
        text = f"{text[:-point]}.{text[-point:]}"
    if draw(st.booleans()):
        text += f"e{draw(st.integers(min_value=-12, max_value=6))}"
    return ("-" if draw(st.booleans()) else "") + text


@st.composite
def events(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(("exposure", "request", "conversion", "crash", "exception")))
    text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=6)
    body: dict[str, Any] = {
        "type": kind,
        "v": 1,
        "id": f"g{draw(st.integers(0, 10**6))}",
        "ts": draw(st.integers(0, 253_402_300_799_999)),
        "flag": draw(st.sampled_from(("f", "checkout@staging", "g.h"))) + draw(text),
        "unit": "u" + draw(text),
        "arm": draw(st.sampled_from(("treatment", "control"))),
        "flag_version": draw(st.integers(0, 3)),
    }
    cohort = draw(st.sampled_from((..., None, "compared", "carried", "outside", "holdout")))
    if cohort is not ...:
        body["cohort"] = cohort
    numbers: dict[str, str] = {}
    lengths = (..., None, 0, 1, 7, 256, 257, 2048, 2049)
    if kind == "request":
        body["error"] = draw(st.booleans())
        if draw(st.booleans()):
            numbers["latency_ms"] = draw(literals())
        length = draw(st.sampled_from(lengths[:-2]))
        if length is None:
            body["failure"] = None
        elif length is not ...:
            body["failure"] = draw(text) + "é" * length
    elif kind == "conversion":
        body["name"] = draw(st.sampled_from((..., None, "checkout", "b2", "Bad name")))
        if body["name"] is ...:
            del body["name"]
    else:
        for key, char in (("failure", "é"), ("example", "x")):
            length = draw(st.sampled_from(lengths))
            if length is None:
                body[key] = None
            elif length is not ...:
                body[key] = draw(text) + char * length
        if draw(st.booleans()):
            numbers["value"] = draw(literals())
    raw = orjson.dumps(body)
    for key, number in numbers.items():
        raw = raw[:-1] + f',"{key}":{number}}}'.encode()
    return raw


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(st.lists(events(), min_size=1, max_size=30), min_size=1, max_size=4))
def test_generated_spans_fold_as_python_folds_them(spans: list[list[bytes]]) -> None:
    delta = started()
    for span in spans:
        values: list[bytes | None] = list(span)
        if not same_or_untouched(values, delta):
            python_fold(values, delta)  # as the Folder would, before the next span


@settings(max_examples=500, deadline=None)
@given(literals(most=10**15 - 1))
def test_a_float_of_15_digits_is_read_as_msgspec_reads_it(number: str) -> None:
    raw = orjson.dumps(event(id="x", type="conversion", error=..., latency_ms=..., name="n"))
    values: list[bytes | None] = [raw[:-1] + f',"value":{number}}}'.encode()]
    within = abs(float(number)) <= 1e9 and (float(number) == 0 or abs(float(number)) > 1e-300)
    assert same_or_untouched(values, started()) is within
