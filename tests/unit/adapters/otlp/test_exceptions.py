"""A failing request whose span recorded its exception counts its evaluation and its error.

The exceptions are recorded by real instrumentation: Flask's own
(``opentelemetry-instrumentation-flask``) on a view whose call to a service that
is down raises (a refused connection, retried once), and the SDK's
``span.record_exception`` of a raised ``ConnectionError`` and of one raised 1,000
frames deep (a stack trace over 64 KiB). Each request's span carries OpenFeature's
evaluation event and an ``exception`` event whose ``exception.stacktrace`` is
longer than any value the controller reads: the span must still give its
exposure and its failed request outcome, in both encodings, on every decoder.
"""

from __future__ import annotations

import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
from flask import Flask, request
from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import ReadableSpan

from controller.adapters.otlp import decode_traces_flat, decode_traces_proto
from controller.core.telemetry import (
    DEFAULT_BOUNDS,
    Refusal,
    Spans,
    Translator,
    decode_traces_json,
    rules_of,
)
from controller.core.wire import ExposureIn, RequestIn
from tests.support.otel.otlp_exports import (
    Recorder,
    evaluate,
    openfeature_client,
    traces_json,
    traces_proto,
)

FLAG = "checkout"
UNITS = [f"user-{i}" for i in range(6)]
Decode = Callable[[bytes], Spans | Refusal]
DECODERS: dict[str, tuple[Decode, Callable[[list[ReadableSpan]], bytes]]] = {
    "protobuf": (decode_traces_proto, traces_proto),
    "protobuf-flat": (decode_traces_flat, traces_proto),
    "json": (decode_traces_json, traces_json),
}


def flask_failures(recorder: Recorder) -> list[ReadableSpan]:
    """A Flask app instrumented by Flask's own instrumentation, whose view evaluates the
    flag (OpenFeature's TracingHook) and raises: one request per unit."""
    client = openfeature_client({FLAG: "treatment"})
    app = Flask("checkout")
    FlaskInstrumentor().instrument_app(  # type: ignore[no-untyped-call]
        app, tracer_provider=recorder.provider
    )

    @app.get("/checkout")
    def checkout() -> str:
        evaluate(client, FLAG, request.args["user"])
        return charge()

    with app.test_client() as http:
        for unit in UNITS:
            assert http.get(f"/checkout?user={unit}").status_code == 500
    FlaskInstrumentor().uninstrument_app(app)  # type: ignore[no-untyped-call]
    return recorder.spans()


def charge() -> str:
    """A call to a payment service that is down, retried once, as a client would."""
    try:
        return _post()
    except urllib.error.URLError:
        return _post()


def _post() -> str:
    # urllib raises URLError from ConnectionRefusedError: port 1 of loopback refuses.
    with urllib.request.urlopen("http://127.0.0.1:1/pay", timeout=5) as answer:
        return str(answer.read())


def _connect(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def _down(depth: int) -> None:
    """Two functions calling each other, so the trace repeats no line (nothing elided)."""
    if depth == 0:
        _connect(1)
    _up(depth - 1)


def _up(depth: int) -> None:
    _down(depth - 1)


def recorded_failures(recorder: Recorder, depth: int) -> list[ReadableSpan]:
    """Requests whose span recorded a ``ConnectionError`` raised ``depth`` (even) frames deep."""
    client = openfeature_client({FLAG: "treatment"})
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, depth + 1000))  # beside pytest's own frames
    try:
        for unit in UNITS:
            with recorder.request(status=500):
                evaluate(client, FLAG, unit)
                try:
                    _down(depth)
                except ConnectionError as exc:
                    trace.get_current_span().record_exception(exc)
    finally:
        sys.setrecursionlimit(limit)
    return recorder.spans()


RECORDINGS = {
    "flask-view-raises": (flask_failures, 4096),
    "connection-refused": (lambda r: recorded_failures(r, 0), 0),
    "64k-stack-trace": (lambda r: recorded_failures(r, 1000), 64 * 1024),
}


@pytest.mark.parametrize("encoding", DECODERS.keys())
@pytest.mark.parametrize(("record", "at_least"), RECORDINGS.values(), ids=RECORDINGS.keys())
def test_a_request_that_recorded_its_exception_counts_its_exposure_and_its_error(
    record: Callable[[Recorder], list[ReadableSpan]], at_least: int, encoding: str
) -> None:
    spans = record(Recorder())
    traces = [_stacktrace(span) for span in spans]
    assert len(traces) == len(UNITS)
    assert min(map(len, traces)) > at_least  # what a real app records, not a sample
    decode, encode = DECODERS[encoding]
    decoded = decode(encode(spans))
    assert isinstance(decoded, Spans), decoded
    assert decoded.refused == []
    arrived_ms = time.time_ns() // 1_000_000  # the spans were just recorded
    out = Translator({FLAG: rules_of(FLAG, None, 1)}.get).spans(decoded, arrived_ms)
    exposures = {e.unit for e in out.events if isinstance(e, ExposureIn)}
    failed = {e.unit for e in out.events if isinstance(e, RequestIn) and e.error}
    assert exposures == failed == set(UNITS)
    assert out.refused == []


def _stacktrace(span: ReadableSpan) -> str:
    [event] = [e for e in span.events if e.name == "exception"]
    text = (event.attributes or {})["exception.stacktrace"]
    assert isinstance(text, str)
    return text


def test_the_stack_trace_is_cut_to_the_bound_and_read_no_further() -> None:
    spans = recorded_failures(Recorder(), 600)
    decoded = decode_traces_proto(traces_proto(spans))
    assert isinstance(decoded, Spans)
    events = [e for s in decoded.spans for e in s.events if e.name == "exception"]
    cut = [str(e.attributes["exception.stacktrace"]) for e in events]
    assert [len(text) for text in cut] == [DEFAULT_BOUNDS.max_value_chars] * len(UNITS)
    assert all(text.startswith("Traceback (most recent call last):") for text in cut)
