"""A Flask checkout service as a team would write it, with no code of the controller's.

Flask's own OpenTelemetry instrumentation (``opentelemetry-instrumentation-flask``)
makes each request's server span; the view evaluates its flag with OpenFeature
through the OFREP provider, which OpenFeature's ``TracingHook`` records on that
span; the OpenTelemetry SDK exports the spans over OTLP/HTTP (protobuf). The
controller appears only as the two URLs it is given.

    python tests/otel/flask_app.py OFREP_URL OTLP_TRACES_URL FLAG \\
        [--errors CONTROL,TREATMENT] [--latency-ms MS] [--seed N]

``GET /checkout?user=ID`` serves one request for that user: the new flow when
the flag is on for them. With the error rate of its flow, the view's call to the
payment service (which is down) raises and nothing catches it: Flask answers
500 and its instrumentation records the exception, stack trace and all, on the
span. Werkzeug's threaded server listens on loopback; once it does, the app
prints ``{"port": N}``. SIGTERM (or end of stdin) stops it: it flushes the
spans, prints ``{"exceptions": N, "shortest_stacktrace": CHARS,
"failed_evaluations": M}`` (what its spans' ``exception`` events carried, and how
many of its evaluations the provider failed to make, by the hook's ``error.type``)
and exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

from flask import Flask, request
from openfeature import api
from openfeature.contrib.hook.opentelemetry import TracingHook
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from werkzeug.serving import make_server

# Port 1 of loopback refuses connections: the payment service is down.
PAYMENTS = "http://127.0.0.1:1/pay"


class ExceptionTally(SpanProcessor):
    """How many ``exception`` events the app's spans carried, and the shortest stack trace:
    the proof that what the controller was sent is what Flask's instrumentation writes.
    Also how many evaluations the provider failed to make (the app served its default), as
    the hook's evaluation events say with ``error.type``."""

    def __init__(self) -> None:
        self.count, self.shortest, self.failed = 0, sys.maxsize, 0
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        for event in span.events:
            attributes = event.attributes or {}
            if event.name == "exception":
                text = str(attributes.get("exception.stacktrace", ""))
                with self._lock:
                    self.count += 1
                    self.shortest = min(self.shortest, len(text))
            elif event.name == "feature_flag.evaluation" and "error.type" in attributes:
                with self._lock:
                    self.failed += 1

    def report(self) -> str:
        return json.dumps(
            {
                "exceptions": self.count,
                "shortest_stacktrace": self.shortest,
                "failed_evaluations": self.failed,
            }
        )


def _pair(text: str) -> tuple[float, float]:
    control, treatment = (float(x) for x in text.split(","))
    return control, treatment


def charge() -> str:
    """A call to the payment service, retried once, as a client would."""
    try:
        return _post()
    except urllib.error.URLError:
        time.sleep(0.01)
        return _post()


def _post() -> str:
    with urllib.request.urlopen(PAYMENTS, data=b"{}", timeout=5) as answer:
        return str(answer.read())


def _tracing(otlp_traces_url: str) -> tuple[TracerProvider, ExceptionTally]:
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout-flask"}))
    exporter = OTLPSpanExporter(endpoint=otlp_traces_url, timeout=10)
    tally = ExceptionTally()
    provider.add_span_processor(tally)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
    trace.set_tracer_provider(provider)
    return provider, tally


def _app(args: argparse.Namespace) -> Flask:
    api.set_provider(OFREPProvider(args.ofrep_url))
    api.add_hooks([TracingHook()])
    flags = api.get_client()
    rng, lock = random.Random(args.seed), threading.Lock()
    app = Flask("checkout")
    app.logger.disabled = True  # each failure's traceback belongs on its span, not stderr
    FlaskInstrumentor().instrument_app(app)  # type: ignore[no-untyped-call]

    @app.get("/checkout")
    def checkout() -> dict[str, object]:
        user = request.args.get("user", "anonymous")
        context = EvaluationContext(targeting_key=user)
        new_flow = flags.get_boolean_value(args.flag, False, context)
        with lock:
            failed = rng.random() < args.errors[1 if new_flow else 0]
        time.sleep(args.latency_ms / 1000)
        if failed:
            charge()  # raises: the payment service is down
        return {"user": user, "new_flow": new_flow}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ofrep_url")
    parser.add_argument("otlp_traces_url")
    parser.add_argument("flag")
    parser.add_argument("--errors", type=_pair, default=(0.05, 0.05))
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

    provider, tally = _tracing(args.otlp_traces_url)
    server = make_server("127.0.0.1", 0, _app(args), threaded=True)

    def stop(*_args: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    def stop_at_end_of_input() -> None:
        sys.stdin.read()
        stop()

    signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=stop_at_end_of_input, daemon=True).start()
    print(json.dumps({"port": server.server_port}), flush=True)
    server.serve_forever()
    provider.shutdown()  # the spans still batched are exported before exit
    print(tally.report(), flush=True)


if __name__ == "__main__":
    main()
