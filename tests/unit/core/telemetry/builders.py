"""Neutral spans and records with readable defaults, for the translation's tables of cases."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from controller.core.telemetry import (
    DEFAULT_ARMS,
    NO_ATTRIBUTES,
    Attributes,
    FlagRules,
    LogRecord,
    Lookup,
    Scalar,
    Span,
    SpanEvent,
)

TRACE = "0af7651916cd43dd8448eb211c80319c"
OTHER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ROOT = "b7ad6b7169203331"
CHILD = "00f067aa0ba902b7"
GRANDCHILD = "53995c3f42cd8ad8"
T0_MS = 1_800_000_000_000
"""An instant well after every version change the tables set up."""
T0 = T0_MS * 1_000_000


def evaluation_event(
    flag: str = "checkout",
    variant: str | None = "treatment",
    unit: str | None = "u1",
    *,
    at: int = T0 + 1_000_000,
    name: str = "feature_flag.evaluation",
    extra: Mapping[str, Scalar] | None = None,
) -> SpanEvent:
    attributes: dict[str, Scalar] = {"feature_flag.key": flag}
    if variant is not None:
        attributes["feature_flag.result.variant"] = variant
    if unit is not None:
        attributes["feature_flag.context.id"] = unit
    attributes.update(extra or {})
    return SpanEvent(name, at, attributes)


def span(
    span_id: str = ROOT,
    parent: str = "",
    *,
    trace: str = TRACE,
    name: str = "GET /checkout",
    kind: int = 2,
    start: int = T0,
    duration_ms: float = 25.0,
    status: int = 0,
    attributes: Attributes = NO_ATTRIBUTES,
    events: tuple[SpanEvent, ...] = (),
    resource: Attributes = NO_ATTRIBUTES,
) -> Span:
    return Span(
        trace_id=trace,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=kind,
        start_ns=start,
        end_ns=start + int(duration_ms * 1_000_000),
        status_code=status,
        attributes=attributes,
        events=events,
        resource=resource,
    )


def record(
    attributes: Attributes,
    *,
    trace: str = TRACE,
    span_id: str = ROOT,
    at: int = T0 + 2_000_000,
    event_name: str = "feature_flag.evaluation",
    resource: Attributes = NO_ATTRIBUTES,
) -> LogRecord:
    return LogRecord(trace, span_id, at, event_name, attributes, resource)


def evaluation_attributes(
    flag: str = "checkout", variant: str = "treatment", unit: str | None = "u1"
) -> dict[str, Scalar]:
    found: dict[str, Scalar] = {"feature_flag.key": flag, "feature_flag.result.variant": variant}
    if unit is not None:
        found["feature_flag.context.id"] = unit
    return found


def rules(
    flag: str = "checkout",
    *,
    version: int = 3,
    timeline: tuple[tuple[int, int], ...] = (),
    arms: Mapping[str, Literal["treatment", "control"]] | None = None,
    unit_attribute: str | None = None,
    error_status_min: int = 500,
    conversions: frozenset[str] = frozenset(),
) -> FlagRules:
    return FlagRules(
        flag=flag,
        version=version,
        timeline=timeline,
        arms=arms if arms is not None else DEFAULT_ARMS,
        unit_attribute=unit_attribute,
        error_status_min=error_status_min,
        conversions=conversions,
    )


def lookup(*known: FlagRules) -> Lookup:
    table = {one.flag: one for one in known}
    return table.get
