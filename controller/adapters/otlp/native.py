"""OTLP/protobuf trace exports read by the native extension, where it is installed.

``rollout_otlp_native`` (Rust, ``native/otlp``, built by ``make native``)
walks an export once by the OTLP schema's field numbers and makes the neutral
:class:`~controller.core.telemetry.Span` and
:class:`~controller.core.telemetry.SpanEvent` directly: no protobuf object
per span, key-value pair or value, which was most of the Python decoders'
cost per span. It reads only what it reads exactly as
:func:`~.proto.decode_traces_proto` does (an export the OTLP schema parses,
every item within its bounds) and answers ``None`` for anything else, which
the caller hands to that decoder; an attribute set holding a value not kept
as read (not a scalar, a key or a string past its bound) is bounded by the
core's own :func:`~controller.core.telemetry.kept_attributes`.
``tests/unit/adapters/otlp/test_native.py`` compares it with the Python
decoders on the test corpus and on generated and hostile exports.

Without the extension (installed without a Rust toolchain) the Python
projection of :mod:`.flat` is used; which one is chosen once, at import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Final, cast

from controller.core.telemetry import (
    DEFAULT_BOUNDS,
    NO_ATTRIBUTES,
    Attributes,
    Bounds,
    Span,
    SpanEvent,
    Spans,
    kept_attributes,
)

NativeDecode = Callable[
    [
        bytes,
        tuple[int, int, int, int, int],
        type[Span],
        type[SpanEvent],
        Attributes,
        Callable[[dict[str, object], int], Attributes],
    ],
    list[Span] | None,
]


def _load() -> NativeDecode | None:
    try:
        module = importlib.import_module("rollout_otlp_native")
    except ImportError:
        return None
    return cast("NativeDecode", module.decode_traces)


NATIVE: Final = _load()


def native_decoder() -> bool:
    """Whether OTLP/protobuf trace exports are read by the native extension."""
    return NATIVE is not None


def decode_traces_native(raw: bytes, bounds: Bounds = DEFAULT_BOUNDS) -> Spans | None:
    """The spans of an export, or None when the extension is absent or the export
    holds anything it leaves to :func:`~.proto.decode_traces_proto`."""
    if NATIVE is None:
        return None

    def kept(values: dict[str, object], count: int) -> Attributes:
        return kept_attributes(values, count, bounds)

    limits = (
        bounds.max_items,
        bounds.max_attributes,
        bounds.max_events,
        bounds.max_key_chars,
        bounds.max_value_chars,
    )
    spans = NATIVE(raw, limits, Span, SpanEvent, NO_ATTRIBUTES, kept)
    return None if spans is None else Spans(spans, [])
