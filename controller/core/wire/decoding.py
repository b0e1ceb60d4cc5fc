"""Turn the bytes of one Kafka message into an event, or say why not.

Two decoders, one contract. The pydantic models in :mod:`messages` are the
contract (JSON Schema, documentation, reject reasons). Ingest decodes with the
msgspec structs below, which mirror those models field for field and decode
and validate about 2.5 times faster, keeping ingest near the speed of a bare
consume loop. A property test proves both accept exactly the same inputs.
Anything the fast decoder refuses is decoded again on the slow path, which
classifies the failure with the pydantic models. Decoding never raises for
bad input: it returns a :class:`Rejection` whose ``reason`` is a
:class:`RejectReason`.

Hostile input is bounded before a parser that recurses sees it. The fast path
needs no check: no field of an event holds an object or a list, so msgspec
refuses the first nested value it reads, and its own recursion guard (a
``RecursionError``, caught) ends the look-ahead for ``type`` through deep
nesting. The slow path scans the bytes for nesting deeper than
:data:`MAX_NESTING` before orjson or pydantic parse them, and the bound holds
for the values the contract reads: when the scan finds deeper nesting, the
top-level object is split into each key's last value (msgspec, as raw bytes,
under its recursion guard), and the message is refused only if one of those
is too deep. A deep value that a repeated key overwrites is not read by the
contract, so it does not refuse the event; the contract then decides on the
message as sent (its parser has its own recursion limit).

A run of messages can be decoded at once (:meth:`EventDecoder.decode_many`),
which spares the per-message checks in Python; it answers only when msgspec
accepts every message, with the values :meth:`EventDecoder.decode` would
return, and otherwise answers None, leaving the run to the per-message path.
The flag pattern is then checked once per distinct flag, by the fold.

A key repeated in one object takes its last value, as pydantic reads it.
msgspec also keeps the last value but validates every one, so it refuses an
event whose earlier value is invalid; the slow path then decodes the
contract's reading of it (the object with each key once) on the fast decoder,
so both decoders accept the same events with the same values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from itertools import accumulate
from typing import Annotated, Literal, cast

import msgspec
import orjson
from pydantic import ValidationError

from controller.core.common import (
    CONVERSION_NAME_PATTERN,
    FLAG_KEY_PATTERN,
    MAX_CONVERSION_VALUE,
    MAX_EPOCH_MS,
    MAX_FAILURE_CHARS,
    MAX_FAILURE_EXAMPLE_CHARS,
    MAX_FLAG_KEY,
    MAX_LATENCY_MS,
    SCHEMA_VERSION,
)
from controller.core.wire.messages import EVENT_TYPES, InboundEvent, event_adapter

MAX_DETAIL_CHARS = 500
MAX_NESTING = 16
"""Deeper nesting is refused before parsing; an event is a flat object (depth 1)."""
UNEXPECTED_DETAIL = "the decoder failed on this input"
"""Detail of a rejection by the last line of defence; seeing it means a decoder bug."""

# The flag pattern is checked by EventDecoder once per distinct flag, not by
# msgspec once per event: msgspec runs patterns through `re`, which doubled the
# cost of decoding, while a stream carries few distinct flags. It is checked
# with fullmatch: `$` in `re` also matches before a final newline, which the
# contract (a Rust regex) and the JSON Schema (ECMA) do not.
_Flag = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_FLAG_KEY)]
_FLAG_RE = re.compile(FLAG_KEY_PATTERN)
_Unit = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Ts = (
    Annotated[int, msgspec.Meta(ge=0, le=MAX_EPOCH_MS)] | Annotated[datetime, msgspec.Meta(tz=True)]
)
# msgspec matches a pattern with `re.search`, where `$` also matches before a
# final newline; `\Z` is what the contract's `$` means (Rust regex, ECMA).
_ConversionName = Annotated[str, msgspec.Meta(pattern=CONVERSION_NAME_PATTERN[:-1] + r"\Z")]
_Version = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
_Arm = Literal["treatment", "control"]
_Cohort = Literal["compared", "carried", "outside", "holdout"]
_Failure = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_FAILURE_CHARS)]
_Example = Annotated[str, msgspec.Meta(max_length=MAX_FAILURE_EXAMPLE_CHARS)]


class _Wire(
    msgspec.Struct,
    tag_field="type",
    forbid_unknown_fields=True,
    frozen=True,
    gc=False,
    omit_defaults=True,
):
    # gc=False: events hold only scalars, so they can never form a cycle, and
    # keeping a few thousand of them per batch out of the cyclic collector
    # saves it from rescanning them on every collection.
    # omit_defaults: an event encoded again (the intake's content digest, the OTLP
    # intake's events for Kafka) leaves out the optional fields it does not carry, so
    # an optional field added in a release changes no digest of an event without it
    # (a retried batch is not read as changed) and adds no bytes to it.

    v: Literal[1]
    id: _Id
    ts: _Ts
    flag: _Flag
    unit: _Unit
    arm: _Arm
    flag_version: _Version


class ExposureIn(_Wire, gc=False, tag="exposure", frozen=True):
    """Fast-path mirror of :class:`messages.Exposure`."""

    cohort: _Cohort | None = None


class RequestIn(_Wire, gc=False, tag="request", frozen=True):
    """Fast-path mirror of :class:`messages.RequestOutcome`."""

    error: bool
    latency_ms: Annotated[float, msgspec.Meta(ge=0, le=MAX_LATENCY_MS)] | None = None
    cohort: _Cohort | None = None
    failure: _Failure | None = None


class ConversionIn(_Wire, gc=False, tag="conversion", frozen=True):
    """Fast-path mirror of :class:`messages.Conversion`."""

    name: _ConversionName | None = None
    value: (
        Annotated[float, msgspec.Meta(ge=-MAX_CONVERSION_VALUE, le=MAX_CONVERSION_VALUE)] | None
    ) = None
    cohort: _Cohort | None = None


class CrashIn(_Wire, gc=False, tag="crash", frozen=True):
    """Fast-path mirror of :class:`messages.Crash`."""

    cohort: _Cohort | None = None
    failure: _Failure | None = None
    example: _Example | None = None


class ExceptionIn(_Wire, gc=False, tag="exception", frozen=True):
    """Fast-path mirror of :class:`messages.RaisedException`."""

    cohort: _Cohort | None = None
    failure: _Failure | None = None
    example: _Example | None = None


InEvent = ExposureIn | RequestIn | ConversionIn | CrashIn | ExceptionIn
_fast: msgspec.json.Decoder[InEvent] = msgspec.json.Decoder(InEvent)
# Each top-level key's last value, unparsed: how the contract reads a repeated key.
_last_values: msgspec.json.Decoder[dict[str, msgspec.Raw]] = msgspec.json.Decoder(
    dict[str, msgspec.Raw]
)
# What msgspec raises on bad input: its own errors, UnicodeDecodeError for
# invalid UTF-8 in a string, RecursionError for deep nesting.
_FAST_FAILURES = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)


class RejectReason(StrEnum):
    """Why an inbound message was not counted (the DLQ ``reason`` header)."""

    EMPTY = "empty"
    OVERSIZE = "oversize"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    SCHEMA_VIOLATION = "schema_violation"
    STORE_REFUSED = "store_refused"
    """Valid, but Redis would refuse to add it (a damaged aggregate key)."""
    PROCESSING_ERROR = "processing_error"
    """A command or monitor alert that failed while it was applied, for a reason
    no retry can fix; the detail names the error."""


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: RejectReason
    detail: str


class EventDecoder:
    """Decodes messages of one stream, remembering which flag keys are valid."""

    def __init__(self, *, max_bytes: int, max_remembered_flags: int = 10_000) -> None:
        self._max_bytes = max_bytes
        self._max_flags = max_remembered_flags
        self._valid_flags: set[str] = set()

    def decode(self, raw: bytes | None) -> InEvent | Rejection:
        """Decode and validate one message value against the v1 event contracts."""
        if not raw:
            return Rejection(RejectReason.EMPTY, "message has no value")
        if len(raw) > self._max_bytes:
            return Rejection(RejectReason.OVERSIZE, f"{len(raw)} bytes > limit {self._max_bytes}")
        try:
            event = _fast.decode(raw)
        except _FAST_FAILURES:
            return _slow(raw)
        if event.flag not in self._valid_flags:
            if not _FLAG_RE.fullmatch(event.flag):
                return _slow(raw)
            self._remember(event.flag)
        return event

    def decode_many(self, raws: Sequence[bytes | None]) -> list[InEvent] | None:
        """Decode every message of ``raws``, or None: then decode each with :meth:`decode`.

        Answers only when msgspec accepts every message, with the events
        :meth:`decode` would return, save for one check: the flag pattern,
        which is the caller's, once per distinct flag rather than once per
        event (``fold(..., flag_ok=decoder.flag_ok)`` stops at the first
        event whose flag the pattern refuses; that one and the rest then take
        :meth:`decode`). The same msgspec decoder is mapped over the messages,
        the loop running in C; a message that is missing, empty, oversize or
        refused by msgspec makes the answer None. Decoding the messages as one
        newline-delimited text (``decode_lines``) was measured too: it saved
        about 1%, and its count of values proves nothing, since it reads two
        values from one line and skips blank lines (a message of two events
        next to a message of spaces would pass); proving each line one
        message cost more than the calls it saved.
        """
        if not raws:
            return []
        try:
            if max(map(len, cast("Sequence[bytes]", raws))) > self._max_bytes:
                return None
            events = list(map(_fast.decode, cast("Sequence[bytes]", raws)))
        except (TypeError, *_FAST_FAILURES):  # TypeError: a message without a value
            return None
        return events

    def flag_ok(self, flag: str) -> bool:
        """Whether ``flag`` matches the flag pattern (remembered once it has)."""
        if flag in self._valid_flags:
            return True
        if not _FLAG_RE.fullmatch(flag):
            return False
        self._remember(flag)
        return True

    def _remember(self, flag: str) -> None:
        if len(self._valid_flags) >= self._max_flags:
            self._valid_flags.clear()
        self._valid_flags.add(flag)


def decode_event(raw: bytes | None, *, max_bytes: int) -> InEvent | Rejection:
    """Decode one message on its own (a stream should keep one :class:`EventDecoder`)."""
    return EventDecoder(max_bytes=max_bytes).decode(raw)


def _slow(raw: bytes) -> InEvent | Rejection:
    """The slow path: bound the nesting of what the contract reads, then classify with it."""
    try:
        if nesting_exceeds(raw, MAX_NESTING) and _read_too_deep(raw):
            return _too_deep(raw)
        return _classify(raw)
    except Exception as exc:
        # The last line of defence: one message the parsers choke on must be
        # dead-lettered, not stop ingest. The fuzz test proves it unreached.
        return Rejection(
            RejectReason.SCHEMA_VIOLATION, f"{UNEXPECTED_DETAIL}: {type(exc).__name__}"
        )


def _classify(raw: bytes) -> InEvent | Rejection:
    """The contract decides; if it refuses ``raw``, say precisely why.

    The contract reads a repeated key's last value and ignores the earlier
    ones, however odd (``1e400``), so it runs before any stricter parser.
    """
    try:
        model = event_adapter.validate_json(raw)
    except ValidationError as exc:
        return _refusal(raw, exc)
    return _as_contract_reads(model)


def _refusal(raw: bytes, exc: ValidationError) -> Rejection:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        return Rejection(RejectReason.MALFORMED_JSON, str(err)[:MAX_DETAIL_CHARS])
    if not isinstance(obj, dict):
        return Rejection(RejectReason.NOT_AN_OBJECT, f"top level is {type(obj).__name__}")
    kind = obj.get("type")
    # A list or an object is unhashable: test the type before the set.
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        return Rejection(RejectReason.UNKNOWN_TYPE, f"type {str(kind)[:64]!r} is not an event")
    version = obj.get("v")
    if version is not None and (type(version) is not int or version != SCHEMA_VERSION):
        return Rejection(RejectReason.UNSUPPORTED_VERSION, f"v={str(version)[:32]!r}")
    return Rejection(RejectReason.SCHEMA_VIOLATION, summarize(exc))


def _as_contract_reads(model: InboundEvent) -> InEvent | Rejection:
    """The event the contract accepted, decoded by ingest from the contract's reading.

    The fast decoder refused ``raw`` but the contract did not: a repeated key
    whose earlier value msgspec validated too. Its re-encoded reading has
    each key once.
    """
    try:
        event = _fast.decode(event_adapter.dump_json(model))
    except _FAST_FAILURES:
        event = None
    if event is None or not _FLAG_RE.fullmatch(event.flag):
        # Never count an event the two decoders disagree on, and say so, so
        # the mismatch gets fixed.
        return Rejection(
            RejectReason.SCHEMA_VIOLATION, "accepted by the contract, refused by ingest"
        )
    return event


# The nesting scan drops strings (possessive, so an unterminated one is
# consumed to the end in linear time), keeps brackets as +1/-1 bytes and sums
# them in C: a few milliseconds for the largest message, where a Python loop
# over each bracket took ten times as long.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEPS = bytes.maketrans(b"[]{}", b"\x01\xff\x01\xff")


def nesting_exceeds(raw: bytes, limit: int) -> bool:
    """Whether the JSON text ``raw`` nests objects and lists deeper than ``limit``.

    A byte scan, linear in ``len(raw)``; brackets inside strings do not count.
    """
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return False
    steps = _JSON_STRING.sub(b"", raw).translate(_BRACKET_STEPS, _NOT_BRACKETS)
    return max(accumulate(memoryview(steps).cast("b")), default=0) > limit


def _read_too_deep(raw: bytes) -> bool:
    """Whether a value the contract reads in ``raw`` nests deeper than :data:`MAX_NESTING`.

    Only called for text the byte scan found too deep. The contract reads a
    top-level object's last value of each key; text that is not one such
    object (nor short of the recursion guard) is too deep as a whole.
    """
    try:
        values = _last_values.decode(raw)
    except _FAST_FAILURES:
        return True
    # A top-level value sits one level inside the object.
    return any(nesting_exceeds(bytes(value), MAX_NESTING - 1) for value in values.values())


def _too_deep(raw: bytes) -> Rejection:
    detail = f"nested deeper than {MAX_NESTING} levels; an event is a flat object"
    first = raw.lstrip(b" \t\r\n")[:1]
    if first == b"{":
        return Rejection(RejectReason.SCHEMA_VIOLATION, detail)
    if first == b"[":
        return Rejection(RejectReason.NOT_AN_OBJECT, f"top level is a list {detail}")
    return Rejection(RejectReason.MALFORMED_JSON, detail)


def summarize(exc: ValidationError) -> str:
    """A one-line, bounded description of what failed validation (no input echoed)."""
    parts = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]]
    return "; ".join(parts)[:MAX_DETAIL_CHARS]
