"""The neutral shape of what OpenTelemetry exporters send, and the bounds every decoder keeps.

Both encodings of OTLP (protobuf and JSON) decode into these types, so what
follows them (:mod:`.evaluations`, :mod:`.translating`) reads one shape. An
attribute keeps only scalar values; arrays, key-value lists and bytes are
dropped, since nothing the controller reads is one. Each decoder reads its own
AnyValue as a scalar, or as ``None`` when it is anything else (never walked:
nothing in it is read), and hands the pairs to :func:`kept_attributes`, which
applies one set of bounds to both encodings.

An item (a span, a log record) over a bound on what is read (its count of
attributes or events, a name too long, a malformed id) or that cannot be
decoded at all is refused on its own: a helper
raises :class:`Refused`, the decoder catches it at the item and records a
:class:`Refusal` with the item's index, and the item's siblings are kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, TypeVar

import msgspec

from controller.core.common import ControllerError

Scalar = str | bool | int | float
Attributes = Mapping[str, Scalar]
MAX_INT64: Final = 2**63 - 1
MAX_UINT64: Final = 2**64 - 1
NO_ATTRIBUTES: Attributes = MappingProxyType({})

RefusalReason = Literal[
    "oversize",
    "hostile_attribute",
    "malformed",
    "unknown_variant",
    "evaluation_error",
    "bad_version",
    "no_unit",
    "bad_time",
    "guard_interval",
]
REFUSAL_REASONS: Final[tuple[RefusalReason, ...]] = (
    "oversize",
    "hostile_attribute",
    "malformed",
    "unknown_variant",
    "evaluation_error",
    "bad_version",
    "no_unit",
    "bad_time",
    "guard_interval",
)
"""Why an item or an evaluation is not counted: stable strings, also the DLQ reasons.
``guard_interval`` is no error: the evaluation fell too near a version change to be
attributed, and is counted apart, not dead-lettered. ``evaluation_error`` is an
evaluation the app's provider failed to make: the app served its own default, no arm."""
WHOLE_BODY: Final = -1
"""The index of a :class:`Refusal` of the whole body (not JSON, not an export)."""
MAX_DETAIL_CHARS: Final = 200


# The items are msgspec structs, frozen and slotted: built by the thousand per
# export, a struct is made in C where a frozen dataclass sets each field
# through object.__setattr__ (about ten times slower, measured). They hold
# only scalars and mappings of scalars, so they stay out of the cyclic GC.
class SpanEvent(msgspec.Struct, frozen=True, gc=False):
    name: str
    time_ns: int
    attributes: Attributes


class Span(msgspec.Struct, frozen=True, gc=False):
    """A span; ids are lower-case hex (32 and 16 characters), ``parent_span_id`` "" at a root."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    attributes: Attributes
    events: tuple[SpanEvent, ...]
    resource: Attributes


class LogRecord(msgspec.Struct, frozen=True, gc=False):
    """A log record; ids "" when it was written outside a span."""

    trace_id: str
    span_id: str
    time_ns: int
    event_name: str
    attributes: Attributes
    resource: Attributes
    severity: int = 0
    """Its ``severity_number``: 17-20 ERROR, 21-24 FATAL; 0 unspecified."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """An item of an export (or, at :data:`WHOLE_BODY`, the export) not counted, and why."""

    index: int
    reason: str
    detail: str


@dataclass(slots=True)
class Spans:
    spans: list[Span] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


@dataclass(slots=True)
class Logs:
    records: list[LogRecord] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


def subset(batch: Spans | Logs, indices: list[int]) -> Spans | Logs:
    """The items of ``batch`` at ``indices``, in that order, as a batch of their own."""
    if isinstance(batch, Spans):
        return Spans(spans=[batch.spans[i] for i in indices])
    return Logs(records=[batch.records[i] for i in indices])


@dataclass(frozen=True, slots=True)
class Bounds:
    """The most one export, and one item of it, may hold; an item past one is refused."""

    max_items: int = 10_000
    """Spans or log records in one export; more refuses the whole export."""
    max_attributes: int = 128
    """Attributes of one span, event, record or resource, and entries of one array or list."""
    max_events: int = 128
    max_key_chars: int = 256
    max_value_chars: int = 4096


DEFAULT_BOUNDS: Final = Bounds()

SPAN_KIND_SERVER: Final = 2
STATUS_ERROR: Final = 2
EVENT_NAME_ATTRIBUTE: Final = "event.name"
"""Where a log record without an ``event_name`` field may name its event."""


class Refused(ControllerError):
    """Raised inside a decoder's item: the item is refused for ``reason``."""

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RefusalReason = reason
        self.detail = detail[:MAX_DETAIL_CHARS]

    def at(self, index: int) -> Refusal:
        return Refusal(index, self.reason, self.detail)


def check_count(count: int, bounds: Bounds) -> None:
    """Refuse an item with more than ``max_attributes`` attributes, before any is read."""
    if count > bounds.max_attributes:
        raise Refused("oversize", f"{count} attributes > {bounds.max_attributes}")


def kept_attributes(values: dict[str, object], count: int, bounds: Bounds) -> Attributes:
    """The scalar attributes of ``values`` (read from ``count`` pairs), bounded as they are kept.

    A decoder reads its pairs into ``values`` (a repeated key keeps its last
    value), each value a scalar, or ``None`` for one it did not read (an empty
    AnyValue, an array, a key-value list, bytes). What is kept is bounded and
    what is not read costs its item nothing, as the OpenTelemetry SDK's own
    attribute limits do: a value not read is dropped, as is an attribute whose
    key is over ``max_key_chars`` (no key the controller reads is that long),
    and a string over ``max_value_chars`` is cut to it. Nothing the controller
    reads comes near that length (a flag key or variant at most 128
    characters, a unit 256, a version 10 digits), so a cut value is refused
    where it is read, as it would have been whole, while an exception's stack
    trace, a long URL or a SQL statement leaves its span's evaluation and
    outcome counted. The common case, all scalars within bounds, answers
    ``values`` itself.
    """
    check_count(count, bounds)
    max_key, max_value = bounds.max_key_chars, bounds.max_value_chars
    dropped: list[str] = []
    cut: list[str] = []
    for key, value in values.items():
        kind = type(value)
        if len(key) > max_key:
            dropped.append(key)
        elif kind is str:
            if len(value) > max_value:  # type: ignore[arg-type]
                cut.append(key)
        elif kind is not int and kind is not float and kind is not bool:
            dropped.append(key)
    for key in cut:
        values[key] = values[key][:max_value]  # type: ignore[index]
    for key in dropped:
        del values[key]
    return values  # type: ignore[return-value]


def bounded_text(value: str, what: str, bounds: Bounds) -> str:
    """A name or other text of an item, refused past ``max_value_chars``."""
    if len(value) > bounds.max_value_chars:
        raise Refused("oversize", f"{what}: {len(value)} chars > {bounds.max_value_chars}")
    return value


_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
_ZERO_TRACE_BYTES, _ZERO_SPAN_BYTES = bytes(16), bytes(8)


def trace_id_from(raw: bytes, *, required: bool) -> str:
    """A trace id from its 16 bytes (protobuf), as :func:`trace_id_of` reads its hex."""
    if len(raw) != 16 or raw == _ZERO_TRACE_BYTES:
        if not required and (not raw or raw == _ZERO_TRACE_BYTES):
            return ""
        raise Refused("malformed", f"trace id of {len(raw)} bytes is not 16, not all 0")
    return raw.hex()


def span_id_from(raw: bytes, *, required: bool) -> str:
    """A span id from its 8 bytes (protobuf), as :func:`span_id_of` reads its hex."""
    if len(raw) != 8 or raw == _ZERO_SPAN_BYTES:
        if not required and (not raw or raw == _ZERO_SPAN_BYTES):
            return ""
        raise Refused("malformed", f"span id of {len(raw)} bytes is not 8, not all 0")
    return raw.hex()


def trace_id_of(text: str, *, required: bool) -> str:
    """A trace id from its hex text (any case); "" when absent (or all 0) and not ``required``."""
    if not text and not required:
        return ""
    lower = text.lower()
    if lower == _ZERO_TRACE and not required:
        return ""
    if _HEX32.fullmatch(lower) is None or lower == _ZERO_TRACE:
        raise Refused("malformed", f"trace id {text[:40]!r} is not 32 hex digits, not all 0")
    return lower


def span_id_of(text: str, *, required: bool) -> str:
    """A span id from its hex text (any case); "" when absent (or all 0) and not ``required``."""
    if not text and not required:
        return ""
    lower = text.lower()
    if lower == _ZERO_SPAN and not required:
        return ""
    if _HEX16.fullmatch(lower) is None or lower == _ZERO_SPAN:
        raise Refused("malformed", f"span id {text[:40]!r} is not 16 hex digits, not all 0")
    return lower


def check_events(count: int, bounds: Bounds) -> None:
    if count > bounds.max_events:
        raise Refused("oversize", f"{count} events > {bounds.max_events}")


def check_items(count: int, bounds: Bounds) -> Refusal | None:
    """A refusal of the whole export when it holds more than ``max_items`` items."""
    if count > bounds.max_items:
        return Refusal(WHOLE_BODY, "oversize", f"{count} items > {bounds.max_items}")
    return None


R = TypeVar("R")
It = TypeVar("It")
Out = TypeVar("Out")


def items_of(
    groups: list[tuple[R, list[It]]],
    bounds: Bounds,
    resource_of: Callable[[R, Bounds], Attributes],
    item_of: Callable[[It, Attributes, Bounds], Out],
) -> tuple[list[Out], list[Refusal]] | Refusal:
    """Each item of each resource read by ``item_of``, or its refusal, in the export's order.

    Both decoders hand their export here as (resource, items) groups; an item
    (or a resource, for all of its items) over a bound is refused at its
    index, and an export of more than ``max_items`` items is refused whole.
    """
    too_many = check_items(sum(len(items) for _, items in groups), bounds)
    if too_many is not None:
        return too_many
    kept: list[Out] = []
    refused: list[Refusal] = []
    index = 0
    for resource, items in groups:
        try:
            attributes = resource_of(resource, bounds)
        except Refused as exc:
            refusal = Refused(exc.reason, f"resource: {exc.detail}")
            refused.extend(refusal.at(i) for i in range(index, index + len(items)))
            index += len(items)
            continue
        for item in items:
            try:
                kept.append(item_of(item, attributes, bounds))
            except Refused as exc:
                refused.append(exc.at(index))
            index += 1
    return kept, refused
