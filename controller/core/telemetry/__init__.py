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
from controller.core.telemetry.fingerprints import (
    MAX_EXAMPLE_CHARS,
    Fingerprint,
    exception_fingerprint,
    scrub,
)
from controller.core.telemetry.flag_rules import DEFAULT_ARMS, FlagRules, Lookup, rules_of
from controller.core.telemetry.joining import JoinBuffer
from controller.core.telemetry.journal import journal_batch, journal_entry, within
from controller.core.telemetry.otlp_json import decode_logs_json, decode_traces_json
from controller.core.telemetry.recording import Translated, second_look
from controller.core.telemetry.rejoining import RejoinMarks
from controller.core.telemetry.signals import (
    DEFAULT_BOUNDS,
    EVENT_NAME_ATTRIBUTE,
    NO_ATTRIBUTES,
    REFUSAL_REASONS,
    SPAN_KIND_SERVER,
    STATUS_ERROR,
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
    check_count,
    check_events,
    check_items,
    items_of,
    kept_attributes,
    span_id_from,
    span_id_of,
    subset,
    trace_id_from,
    trace_id_of,
)
from controller.core.telemetry.translating import MAX_HOPS, Translator

__all__ = [
    "DEFAULT_ARMS",
    "DEFAULT_BOUNDS",
    "EVALUATION_NAME",
    "EVENT_NAMES",
    "EVENT_NAME_ATTRIBUTE",
    "MAX_EXAMPLE_CHARS",
    "MAX_HOPS",
    "NO_ATTRIBUTES",
    "REFUSAL_REASONS",
    "SPAN_KIND_SERVER",
    "STATUS_ERROR",
    "WHOLE_BODY",
    "Attributes",
    "Bounds",
    "Evaluation",
    "Fingerprint",
    "FlagRules",
    "JoinBuffer",
    "LogRecord",
    "Logs",
    "Lookup",
    "Refusal",
    "RefusalReason",
    "Refused",
    "RejoinMarks",
    "Scalar",
    "Span",
    "SpanEvent",
    "Spans",
    "Translated",
    "Translator",
    "bounded_text",
    "check_count",
    "check_events",
    "check_items",
    "decode_logs_json",
    "decode_traces_json",
    "evaluation_in",
    "evaluations_in",
    "event_id",
    "exception_fingerprint",
    "items_of",
    "journal_batch",
    "journal_entry",
    "kept_attributes",
    "rules_of",
    "scrub",
    "second_look",
    "span_id_from",
    "span_id_of",
    "subset",
    "trace_id_from",
    "trace_id_of",
    "within",
]
