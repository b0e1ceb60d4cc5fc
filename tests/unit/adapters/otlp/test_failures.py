"""Exceptions and crashes a real app records give crash and exception events for its flags.

A queue worker instrumented with the OpenTelemetry SDK continues its producer's trace (a
remote parent, never exported here), evaluates its flag through OpenFeature's
``TracingHook`` and records the exceptions it meets with ``span.record_exception``, as
instrumentations do; it logs through the SDK's ``LoggingHandler``, so ``log.error`` is an
ERROR record and ``log.critical`` a FATAL one. It sends no request: its spans continue a
trace whose request lies elsewhere. Each export is read by every decoder.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections import Counter
from collections.abc import Callable

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggingHandler, ReadableLogRecord
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from controller.adapters.otlp import decode_logs_proto, decode_traces_flat, decode_traces_proto
from controller.core.telemetry import (
    Logs,
    Refusal,
    Spans,
    Translator,
    decode_logs_json,
    decode_traces_json,
    rules_of,
)
from controller.core.wire import CrashIn, ExceptionIn, ExposureIn, InEvent, RequestIn
from tests.support.otel.otlp_exports import (
    Recorder,
    evaluate,
    logs_json,
    logs_proto,
    openfeature_client,
    traces_json,
    traces_proto,
)

FLAG = "new-cache"
FAILING = {"device-0": 3, "device-1": 0, "device-2": 1, "device-3": 2}
"""Each unit's exceptions in its job."""
TRACES: dict[str, tuple[Callable[[bytes], Spans | Refusal], Callable[..., bytes]]] = {
    "protobuf": (decode_traces_proto, traces_proto),
    "protobuf-flat": (decode_traces_flat, traces_proto),
    "json": (decode_traces_json, traces_json),
}


def _remote_parent(n: int) -> Context:
    """The producer's span, as a propagated context: this app never exports it."""
    parent = SpanContext(
        trace_id=0x5EED0000 + n, span_id=0xFACE + n, is_remote=True, trace_flags=TraceFlags(1)
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def worker(recorder: Recorder, variant: str = "treatment") -> list[ReadableSpan]:
    """One job per unit: the flag evaluated, then its exceptions recorded as they are met."""
    client = openfeature_client({FLAG: variant})
    for n, (unit, failures) in enumerate(FAILING.items()):
        with recorder.tracer.start_as_current_span(
            "process job", context=_remote_parent(n), kind=SpanKind.CONSUMER
        ) as span:
            evaluate(client, FLAG, unit)
            for attempt in range(failures):
                try:
                    raise TimeoutError(f"cache read {attempt} timed out")
                except TimeoutError as exc:
                    span.record_exception(exc)
    return recorder.spans()


def _translated(
    spans: list[ReadableSpan], encoding: str, *, failures: bool = True
) -> list[InEvent]:
    decode, encode = TRACES[encoding]
    decoded = decode(encode(spans))
    assert isinstance(decoded, Spans), decoded
    rules = {FLAG: rules_of(FLAG, None, 1, failures=failures)}
    out = Translator(rules.get).spans(decoded, time.time_ns() // 1_000_000)
    assert out.refused == []
    return out.events


@pytest.mark.parametrize("encoding", TRACES)
def test_each_recorded_exception_is_an_exception_of_its_units_arm(encoding: str) -> None:
    events = _translated(worker(Recorder()), encoding)
    exceptions = Counter(e.unit for e in events if isinstance(e, ExceptionIn))
    assert exceptions == +Counter(FAILING)
    assert {e.arm for e in events if isinstance(e, ExceptionIn)} == {"treatment"}
    assert {e.unit for e in events if isinstance(e, ExposureIn)} == set(FAILING)
    assert not [e for e in events if isinstance(e, (RequestIn, CrashIn))]  # no request sent


def test_a_resent_export_gives_the_same_ids() -> None:
    spans = worker(Recorder())
    first, again = _translated(spans, "protobuf"), _translated(spans, "json")
    ids = sorted(e.id for e in first if isinstance(e, ExceptionIn))
    assert ids == sorted(e.id for e in again if isinstance(e, ExceptionIn))
    assert len(set(ids)) == sum(FAILING.values())


def test_a_flag_whose_plan_guards_no_failure_counts_none() -> None:
    events = _translated(worker(Recorder()), "protobuf", failures=False)
    assert not [e for e in events if isinstance(e, (ExceptionIn, CrashIn))]
    assert {e.unit for e in events if isinstance(e, ExposureIn)} == set(FAILING)


@pytest.mark.parametrize("first", ["evaluation", "exception"])
def test_an_exception_and_its_evaluation_join_in_either_order(first: str) -> None:
    recorder = Recorder()
    client = openfeature_client({FLAG: "control"})
    with recorder.tracer.start_as_current_span("job", context=_remote_parent(8)):
        evaluate(client, FLAG, "device-8")  # an earlier job: the flag is known
    with recorder.tracer.start_as_current_span("job", context=_remote_parent(9)):
        with recorder.tracer.start_as_current_span("read cache") as inner:
            inner.record_exception(TimeoutError("slow"))
        evaluate(client, FLAG, "device-9")
    earlier, failing, evaluated = recorder.spans()  # the inner span ends (is exported) first
    translator = Translator({FLAG: rules_of(FLAG, None, 1, failures=True)}.get)
    now = time.time_ns() // 1_000_000
    found: list[InEvent] = []
    order = [evaluated, failing] if first == "evaluation" else [failing, evaluated]
    for span in (earlier, *order):
        decoded = decode_traces_proto(traces_proto([span]))
        assert isinstance(decoded, Spans)
        found += translator.spans(decoded, now).events
    [exception] = [e for e in found if isinstance(e, ExceptionIn)]
    assert (exception.unit, exception.arm) == ("device-9", "control")


def logged(recorder: Recorder) -> list[ReadableSpan]:
    """Jobs whose failures are logged through the SDK's logging handler: device-0's job
    logs an error and then crashes (a critical record), device-1's logs a warning only."""
    client = openfeature_client({FLAG: "treatment"})
    log = logging.getLogger("tests.failures.worker")
    with warnings.catch_warnings():
        # The SDK's handler, deprecated for opentelemetry-instrumentation-logging's (not
        # installed here): both map logging's levels to the same severity numbers.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=recorder.logger_provider)
    log.addHandler(handler)
    log.propagate = False
    try:
        for n, unit in enumerate(("device-0", "device-1")):
            with recorder.tracer.start_as_current_span("job", context=_remote_parent(n)):
                evaluate(client, FLAG, unit)
                if unit == "device-0":
                    try:
                        raise MemoryError("cache grew past the heap")
                    except MemoryError:
                        log.exception("cache refill failed")
                    log.critical("worker exits: out of memory")
                else:
                    log.warning("cache cold")
    finally:
        log.removeHandler(handler)
    return recorder.spans()


@pytest.mark.parametrize(
    "decode", [lambda r: decode_logs_proto(logs_proto(r)), lambda r: decode_logs_json(logs_json(r))]
)
def test_error_records_are_exceptions_and_fatal_ones_crashes_too(
    decode: Callable[[list[ReadableLogRecord]], Logs | Refusal],
) -> None:
    recorder = Recorder()
    spans = logged(recorder)
    translator = Translator({FLAG: rules_of(FLAG, None, 1, failures=True)}.get)
    now = time.time_ns() // 1_000_000
    decoded_spans = decode_traces_proto(traces_proto(spans))
    assert isinstance(decoded_spans, Spans)
    events = translator.spans(decoded_spans, now).events
    records = decode(recorder.records())
    assert isinstance(records, Logs), records
    assert sorted(r.severity for r in records.records) == [13, 17, 21]
    out = translator.logs(records, now)
    assert out.refused == []
    events += out.events
    kinds = Counter(
        (type(e).__name__, e.unit) for e in events if isinstance(e, (CrashIn, ExceptionIn))
    )
    assert kinds == {("ExceptionIn", "device-0"): 2, ("CrashIn", "device-0"): 1}


@pytest.mark.parametrize("encoding", TRACES)
def test_each_exception_carries_its_fingerprint_and_a_scrubbed_example(encoding: str) -> None:
    events = _translated(worker(Recorder()), encoding)
    named = {(e.failure, e.example) for e in events if isinstance(e, ExceptionIn)}
    # One bug, one name: the attempt's number is scrubbed from the example, and the top frame
    # is where the worker raised it (the file by its last two parts, as any install has them).
    assert named == {
        (
            "TimeoutError in otlp/test_failures.py:worker",
            "TimeoutError: cache read <n> timed out",
        )
    }


def test_a_logged_exception_is_named_by_its_type_and_a_critical_record_by_its_message() -> None:
    recorder = Recorder()
    logged(recorder)
    translator = Translator({FLAG: rules_of(FLAG, None, 1, failures=True)}.get)
    now = time.time_ns() // 1_000_000
    decoded_spans = decode_traces_proto(traces_proto(recorder.spans()))
    assert isinstance(decoded_spans, Spans)
    translator.spans(decoded_spans, now)
    records = decode_logs_proto(logs_proto(recorder.records()))
    assert isinstance(records, Logs)
    events = translator.logs(records, now).events
    failures = {
        (type(e).__name__, e.failure) for e in events if isinstance(e, (CrashIn, ExceptionIn))
    }
    names = {name for _, name in failures if name}
    assert any(name.startswith("MemoryError in ") for name in names), failures
