"""The events stream's records decoded and folded by the native extension, where it is installed.

``rollout_fold_native`` (Rust, ``native/fold``, built by ``make native``)
reads a span of record values and folds them straight into a partition
delta's cells and ids, with no event object per record and no slot appended
per count: what :meth:`~controller.core.wire.EventDecoder.decode_many` and
:func:`~controller.core.stats.fold` do, at a fraction of their cost per event
(docs/architecture.md, "Decoding and folding natively"). It answers only
for a span whose every value is the plain case, which it reads exactly as
msgspec does, and folds it exactly as the Python fold would (the float sums
continued in event order, so the same to the last bit); for anything else it
answers False having changed nothing, and the caller's Python path decodes
and folds the span. ``tests/unit/daemon/ingest/test_native_fold.py`` compares
both on generated and hostile spans.

Every bound and literal the extension checks is read here from the decoder's
own msgspec structs, and the unit buckets' layout from the fold's, so the
numbers live in one place. Were the structs to change shape (a field added),
:func:`native_folder` answers None, as it does without the extension, and the
Python path serves: the tests then fail where the extension is installed.

``ROLLOUT_NATIVE_FOLD=0`` turns the extension off, for benchmarks that compare
the two paths in one sitting.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final, Protocol, cast

import msgspec.inspect as spec

from controller.core.common import EDGES_MS
from controller.core.stats import FOLD_LAYOUT, CellDelta, NamedDelta
from controller.core.wire import (
    ConversionIn,
    CrashIn,
    ExceptionIn,
    ExposureIn,
    InEvent,
    RequestIn,
)
from controller.kit.native import fold_extension


class NativeFolder(Protocol):
    """The extension's folder, made for one decoder's byte limit."""

    def fold(
        self,
        values: list[bytes | None],
        into: dict[tuple[str, int, str], CellDelta],
        ids: set[str],
        flag_ok: Callable[[str], bool],
    ) -> bool:
        """Fold every value into ``into`` and ``ids``: True; False, having changed nothing."""
        ...


_TYPES = (ExposureIn, RequestIn, ConversionIn, CrashIn, ExceptionIn)
"""Every event type, in the order the extension names them."""
_COMMON = ("v", "id", "ts", "flag", "unit", "arm", "flag_version")
_OWN: dict[type[InEvent], tuple[str, ...]] = {
    ExposureIn: ("cohort",),
    RequestIn: ("error", "latency_ms", "cohort", "failure"),
    ConversionIn: ("name", "value", "cohort"),
    CrashIn: ("cohort", "failure", "example"),
    ExceptionIn: ("cohort", "failure", "example"),
}
"""The keys the extension reads, each type's after the common ones; required: the common
ones and a request's ``error``."""
_COMPARED = "compared"
"""The cohort counted in its arm's cell (as :func:`~controller.core.stats.fold` counts it)."""


NATIVE: Final[Any] = fold_extension()


def _fields(kind: type[InEvent]) -> dict[str, spec.Field]:
    """A type's fields, when it has the shape the extension reads (else ValueError)."""
    info = spec.type_info(kind)
    if not isinstance(info, spec.StructType) or info.tag_field != "type":
        raise ValueError(f"not a tagged struct: {kind.__name__}")
    names = [*_COMMON, *_OWN[kind]]
    required = {*_COMMON, *(("error",) if kind is RequestIn else ())}
    if not info.forbid_unknown_fields or [f.encode_name for f in info.fields] != names:
        raise ValueError(f"not the keys the extension reads: {kind.__name__}")
    if {f.encode_name for f in info.fields if f.required} != required:
        raise ValueError(f"not the required keys the extension reads: {kind.__name__}")
    return {f.encode_name: f for f in info.fields}


def _optional(info: spec.Type) -> spec.Type:
    """``X | None``'s X (the extension reads null as the field's absence)."""
    if isinstance(info, spec.UnionType) and len(info.types) == 2:
        inner, none = info.types
        if isinstance(none, spec.NoneType):
            return inner
    raise ValueError(f"not an optional field: {info}")


def _chars(info: spec.Type, least: int = 1) -> int:
    """A string's most code points, where it holds at least ``least`` and no pattern."""
    if (
        not isinstance(info, spec.StrType)
        or (info.min_length or 0) != least
        or info.max_length is None
        or info.pattern
    ):
        raise ValueError(f"not a bounded string: {info}")
    return info.max_length


def _failure_chars(found: dict[type[InEvent], dict[str, spec.Field]]) -> tuple[int, int]:
    """The most code points of a failure's name (at least one) and of its example (may be
    empty), the same for crashes and exceptions, and the name's for failed requests."""
    bounds = {
        (_chars(_optional(fields["failure"].type)), _chars(_optional(fields["example"].type), 0))
        for kind, fields in found.items()
        if kind in (CrashIn, ExceptionIn)
    }
    request = _chars(_optional(found[RequestIn]["failure"].type))
    if len(bounds) != 1 or next(iter(bounds))[0] != request:
        raise ValueError(f"not the failure bounds the extension reads: {bounds}, {request}")
    return next(iter(bounds))


def _int_most(info: spec.Type) -> int:
    if not isinstance(info, spec.IntType) or info.ge != 0 or info.gt or info.lt:
        raise ValueError(f"not a non-negative bounded integer: {info}")
    return cast("int", info.le)


def _float_bounds(info: spec.Type) -> tuple[float, float]:
    inner = _optional(info)
    if not isinstance(inner, spec.FloatType) or inner.ge is None or inner.le is None:
        raise ValueError(f"not a bounded float: {info}")
    if inner.gt is not None or inner.lt is not None or inner.multiple_of is not None:
        raise ValueError(f"not a bounded float: {info}")
    return float(inner.ge), float(inner.le)


def _literals(info: spec.Type) -> list[str]:
    if not isinstance(info, spec.LiteralType) or not all(type(v) is str for v in info.values):
        raise ValueError(f"not string literals: {info}")
    return [str(v) for v in info.values]


def _settings(max_bytes: int) -> dict[str, object]:
    """The extension's arguments, read from the decoder's structs and the fold's layout
    (ValueError where they have a shape it does not read)."""
    found = {kind: _fields(kind) for kind in _TYPES}
    request, conversion = found[RequestIn], found[ConversionIn]
    # The common fields are one class's (_Wire); the own ones of each type are read here.
    ts, version = request["ts"].type, request["v"].type
    name = _optional(conversion["name"].type)
    if not isinstance(ts, spec.UnionType) or version != spec.LiteralType((1,)):
        raise ValueError(f"not the ts and v the extension reads: {ts}, {version}")
    if request["error"].type != spec.BoolType() or not isinstance(name, spec.StrType):
        raise ValueError(f"not the error and name the extension reads: {name}")
    if not name.pattern or name.max_length is not None:
        raise ValueError(f"not the conversion name the extension reads: {name}")
    cohorts = {tuple(_literals(_optional(fields["cohort"].type))) for fields in found.values()}
    if len(cohorts) != 1 or name.min_length is not None:
        raise ValueError(f"not the cohorts and name the extension reads: {cohorts}, {name}")
    return {
        "max_bytes": max_bytes,
        "chars": tuple(_chars(request[k].type) for k in ("id", "unit", "flag")),
        "failure_chars": _failure_chars(found),
        "max_ts": _int_most(next(t for t in ts.types if isinstance(t, spec.IntType))),
        "max_version": _int_most(request["flag_version"].type),
        "latency": _float_bounds(request["latency_ms"].type),
        "value": _float_bounds(conversion["value"].type),
        "tags": [cast("spec.StructType", spec.type_info(kind)).tag for kind in _TYPES],
        "arms": _literals(request["arm"].type),
        "cohorts": list(next(iter(cohorts))),
        "compared": _COMPARED,
        "layout": list(FOLD_LAYOUT),
        "edges": [float(edge) for edge in EDGES_MS],
        "cell_type": CellDelta,
        "named_type": NamedDelta,
        # msgspec checks a pattern with re.search; the pattern anchors itself (^ ... \Z).
        "name_ok": re.compile(name.pattern).search,
    }


def native_folder(max_bytes: int) -> NativeFolder | None:
    """The extension's folder for values of at most ``max_bytes``, or None without it (or
    ``ROLLOUT_NATIVE_FOLD=0``, or structs of a shape it does not read)."""
    if NATIVE is None:
        return None
    try:
        settings = _settings(max_bytes)
    except ValueError:
        return None
    return cast("NativeFolder", NATIVE.Folder(**settings))
