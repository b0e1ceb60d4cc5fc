"""OpenTelemetry intake: spans and logs in a neutral shape, flag evaluations, our wire events.

Pure: decoding OTLP/JSON, reading OpenFeature's evaluations from spans and log
records, joining them to their requests and translating them into exposures,
request outcomes and conversions, with the clock passed in.
"""

from controller.core.telemetry.attribution import event_id
from controller.core.telemetry.evaluations import (
    EVALUATION_NAME,
    EVENT_NAMES,
    Evaluation,
    evaluation_in,
    evaluations_in,
)
from controller.core.telemetry.joining import JoinBuffer
from controller.core.telemetry.signals import (
    EVENT_NAME_ATTRIBUTE,
    MAX_ANY_DEPTH,
    REFUSAL_REASONS,
    WHOLE_BODY,
    Attributes,
    Bounds,
    LogRecord,
    Logs,
    Refusal,
    RefusalReason,
    Refused,
    Scalar,
    Span,
    SpanEvent,
    Spans,
    bounded_text,
    check_events,
    check_items,
    kept_attributes,
    span_id_of,
    trace_id_of,
)
from controller.core.telemetry.translating import (
    DEFAULT_ARMS,
    MAX_HOPS,
    FlagRules,
    Lookup,
    Translated,
    Translator,
    rules_of,
)

__all__ = [
    "DEFAULT_ARMS",
    "EVALUATION_NAME",
    "EVENT_NAMES",
    "EVENT_NAME_ATTRIBUTE",
    "MAX_ANY_DEPTH",
    "MAX_HOPS",
    "REFUSAL_REASONS",
    "WHOLE_BODY",
    "Attributes",
    "Bounds",
    "Evaluation",
    "FlagRules",
    "JoinBuffer",
    "LogRecord",
    "Logs",
    "Lookup",
    "Refusal",
    "RefusalReason",
    "Refused",
    "Scalar",
    "Span",
    "SpanEvent",
    "Spans",
    "Translated",
    "Translator",
    "bounded_text",
    "check_events",
    "check_items",
    "evaluation_in",
    "evaluations_in",
    "event_id",
    "kept_attributes",
    "rules_of",
    "span_id_of",
    "trace_id_of",
]
