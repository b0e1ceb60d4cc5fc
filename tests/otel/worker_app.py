"""A queue worker as a team would write it, with no code of the controller's, and no requests.

Each job continues its producer's trace (the ``traceparent`` a queue message carries: a
remote parent this worker never exports), runs in a CONSUMER span, evaluates its flag with
OpenFeature through the OFREP provider and OpenFeature's OpenTelemetry hook, and crashes
with the crash rate of its flow: the exception escapes the job's span, which the SDK
records as an ``exception`` event (``exception.type``, ``exception.message``,
``exception.stacktrace``), and the worker's crash handler logs it with
``log.critical(..., exc_info=True)`` through the SDK's logging handler (a FATAL log
record in the job's trace). Spans and log records go out with the SDK's OTLP/HTTP
exporters. The controller appears only as the URLs it is given.

    python tests/otel/worker_app.py OFREP_URL OTLP_BASE_URL FLAG \\
        [--crashes CONTROL,TREATMENT] [--seed N]

``GET /checkout?user=ID`` hands it one job for that user (a stand-in for a queue, so the
suite's load driver can feed it); the answer says the flow served and whether the job
crashed. Once listening it prints ``{"port": N}``; SIGTERM (or end of stdin) flushes the
spans and records, prints what it did, and exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import sys
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from openfeature import api
from openfeature.contrib.hook.opentelemetry import TracingHook
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags


class JobCrashed(RuntimeError):
    """What a job of the faulty flow raises."""


def _pair(text: str) -> tuple[float, float]:
    control, treatment = (float(x) for x in text.split(","))
    return control, treatment


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ofrep_url")
    parser.add_argument("otlp_url", help="the OTLP/HTTP base: /v1/traces and /v1/logs")
    parser.add_argument("flag")
    parser.add_argument("--crashes", type=_pair, default=(0.05, 0.05))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    resource = Resource.create({"service.name": "cache-worker"})
    provider = TracerProvider(resource=resource)
    spans = OTLPSpanExporter(endpoint=f"{args.otlp_url}/v1/traces", timeout=10)
    provider.add_span_processor(BatchSpanProcessor(spans, schedule_delay_millis=200))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("cache-worker")
    loggers = LoggerProvider(resource=resource)
    records = OTLPLogExporter(endpoint=f"{args.otlp_url}/v1/logs", timeout=10)
    loggers.add_log_record_processor(BatchLogRecordProcessor(records, schedule_delay_millis=200))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK's own handler
        handler = LoggingHandler(logger_provider=loggers)
    log = logging.getLogger("cache-worker")
    log.addHandler(handler)
    log.propagate = False

    api.set_provider(OFREPProvider(args.ofrep_url))
    api.add_hooks([TracingHook()])
    flags = api.get_client()
    rng = random.Random(args.seed)
    lock = threading.Lock()
    done = {"jobs": 0, "crashes": 0}

    def producers_context() -> Any:
        """The producer's span, as the job's ``traceparent`` would carry it."""
        with lock:
            ids = rng.getrandbits(128) or 1, rng.getrandbits(64) or 1
        parent = SpanContext(ids[0], ids[1], is_remote=True, trace_flags=TraceFlags(1))
        return trace.set_span_in_context(NonRecordingSpan(parent))

    def run_job(user: str) -> tuple[bool, bool]:
        """The job: its flow, and whether it crashed (recorded by the SDK and logged)."""
        with tracer.start_as_current_span(
            "process job", context=producers_context(), kind=SpanKind.CONSUMER
        ) as span:
            new_flow = flags.get_boolean_value(
                args.flag, False, EvaluationContext(targeting_key=user)
            )
            with lock:
                crashes = rng.random() < args.crashes[1 if new_flow else 0]
                done["jobs"] += 1
                done["crashes"] += crashes
            try:
                with tracer.start_as_current_span("refill cache"):
                    if crashes:
                        raise JobCrashed(f"cache refill for {user} ran out of memory")
            except JobCrashed:
                log.critical("job crashed; the worker restarts", exc_info=True)
                span.set_attribute("job.crashed", True)
        return new_flow, crashes

    class Jobs(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            user = parse_qs(urlsplit(self.path).query).get("user", ["anonymous"])[0]
            new_flow, crashed = run_job(user)
            body = json.dumps({"user": user, "new_flow": new_flow, "crashed": crashed}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jobs)
    server.daemon_threads = True

    def stop(*_args: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    def stop_at_end_of_input() -> None:
        sys.stdin.read()
        stop()

    signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=stop_at_end_of_input, daemon=True).start()
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever()
    provider.shutdown()  # what is still batched is exported before exit
    loggers.shutdown()
    print(json.dumps(done), flush=True)


if __name__ == "__main__":
    main()
