"""The flag evaluations OpenFeature's OpenTelemetry hooks record, read from spans and logs.

Three forms, as the hooks write them: a span event named
``feature_flag.evaluation`` on the current span (Python ``TracingHook``, Node
``SpanEventHook``), a log record with that event name in the active trace
context (Node ``EventHook``), and a child span of that name carrying the
attributes itself (Node ``SpanHook``), which belongs to its parent span. The
older semantic conventions (a span event named ``feature_flag``, with
``feature_flag.variant`` and ``feature_flag.provider_name``) are read too.

An evaluation whose provider named no variant carries its value instead
(``feature_flag.result.value``, as the conventions require then, and as
OpenFeature's Java SDK writes it): the value, as text, stands for the variant,
so a plan can map ``"true"`` and ``"false"`` to the arms.

An evaluation the provider could not make (its OFREP request failed, timed
out or was cancelled with the app's request) names no variant: the hooks
write ``feature_flag.result.reason`` ``error`` and ``error.type`` instead,
and the app served the default its code holds. Its value is that default, so
it stands for no variant; :attr:`Evaluation.failed` tells it from a variant
that is merely missing.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from controller.core.telemetry.signals import Attributes, LogRecord, Scalar, Span

EVALUATION_NAME: Final = "feature_flag.evaluation"
OLD_EVALUATION_NAME: Final = "feature_flag"
EVENT_NAMES: Final = frozenset({EVALUATION_NAME, OLD_EVALUATION_NAME})

KEY: Final = "feature_flag.key"
VARIANT: Final = "feature_flag.result.variant"
OLD_VARIANT: Final = "feature_flag.variant"
VALUE: Final = "feature_flag.result.value"
CONTEXT_ID: Final = "feature_flag.context.id"
VERSION: Final = "feature_flag.version"
PROVIDER: Final = "feature_flag.provider.name"
OLD_PROVIDER: Final = "feature_flag.provider_name"
REASON: Final = "feature_flag.result.reason"
ERROR_TYPE: Final = "error.type"
ERROR_REASON: Final = "error"

Form = Literal["span_event", "log", "span"]


class Evaluation(msgspec.Struct, frozen=True, gc=False):
    """One flag evaluation, and the span it belongs to (``span_id`` "" when none)."""

    flag: str
    variant: str | None
    unit: str | None
    version: str | None
    trace_id: str
    span_id: str
    time_ns: int
    provider: str | None
    reason: str | None
    error_type: str | None
    form: Form

    @property
    def failed(self) -> bool:
        """The provider failed: no variant, and the hook said why (an error reason or type)."""
        if self.variant is not None:
            return False
        return self.error_type is not None or (self.reason or "").lower() == ERROR_REASON


def _errored(attributes: Attributes) -> bool:
    """The hook says the evaluation failed: an error type, or the reason ``error``."""
    reason = _text(attributes.get(REASON))
    return _text(attributes.get(ERROR_TYPE)) is not None or (reason or "").lower() == ERROR_REASON


def _text(value: Scalar | None) -> str | None:
    """An attribute as text: a string as it is, a number as written, else None."""
    if value is None or value == "":
        return None
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    return None


def _value_text(value: Scalar | None) -> str | None:
    """A flag's value as the variant it stands for: ``true``/``false``, an integer, a string."""
    if type(value) is bool:
        return "true" if value else "false"
    return _text(value)


def _evaluation(
    attributes: Attributes,
    trace_id: str,
    span_id: str,
    time_ns: int,
    form: Form,
    *,
    details: bool = True,
) -> Evaluation | None:
    flag = attributes.get(KEY)
    if type(flag) is not str or not flag:
        return None
    get = attributes.get
    variant = _text(get(VARIANT)) or _text(get(OLD_VARIANT))
    if variant is None and not _errored(attributes):
        variant = _value_text(get(VALUE))
    why = details or variant is None  # without a variant, why there is none is counted
    return Evaluation(
        flag=flag,
        variant=variant,
        unit=_text(get(CONTEXT_ID)),
        version=_text(get(VERSION)),
        trace_id=trace_id,
        span_id=span_id,
        time_ns=time_ns,
        provider=(_text(get(PROVIDER)) or _text(get(OLD_PROVIDER))) if details else None,
        reason=_text(get(REASON)) if why else None,
        error_type=_text(get(ERROR_TYPE)) if why else None,
        form=form,
    )


def evaluations_in(span: Span, *, details: bool = True) -> list[Evaluation]:
    """The evaluations a span records: its evaluation events, or itself if it is one.

    An evaluation span belongs to its parent (a root one to no span); an
    event without a time takes its span's start. Without ``details`` the
    provider, reason and error type are left out (None): nothing counted
    reads them.
    """
    found = []
    if span.name == EVALUATION_NAME:
        own = _evaluation(
            span.attributes,
            span.trace_id,
            span.parent_span_id,
            span.start_ns,
            "span",
            details=details,
        )
        if own is not None:
            found.append(own)
    for event in span.events:
        if event.name in EVENT_NAMES:
            time_ns = event.time_ns or span.start_ns
            one = _evaluation(
                event.attributes,
                span.trace_id,
                span.span_id,
                time_ns,
                "span_event",
                details=details,
            )
            if one is not None:
                found.append(one)
    return found


def evaluation_in(record: LogRecord, *, details: bool = True) -> Evaluation | None:
    """The evaluation a log record carries (event name ``feature_flag.evaluation``), if any
    (``details`` as :func:`evaluations_in`)."""
    if record.event_name != EVALUATION_NAME:
        return None
    return _evaluation(
        record.attributes, record.trace_id, record.span_id, record.time_ns, "log", details=details
    )
