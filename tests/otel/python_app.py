"""A checkout service as a team would write it, with no code of the controller's.

It evaluates its flag with OpenFeature (``openfeature-sdk``) through the OFREP
provider (``openfeature-provider-ofrep``), records each evaluation on the
request's span with OpenFeature's OpenTelemetry hook
(``openfeature-hooks-opentelemetry``), and exports its spans with the
OpenTelemetry SDK's OTLP/HTTP exporter. The controller appears only as the
two URLs it is given: the flags' OFREP server and the traces' OTLP endpoint.

    python tests/otel/python_app.py OFREP_URL OTLP_TRACES_URL FLAG \\
        [--errors CONTROL,TREATMENT] [--latency-ms CONTROL,TREATMENT] [--seed N]

``GET /checkout?user=ID`` serves one request for that user: the new flow
when the flag is on for them. A request fails (500) with the error rate of
its flow and takes about the latency of its flow. Once listening it prints
``{"port": N}``; SIGTERM (or end of stdin) flushes the spans and exits.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from openfeature import api
from openfeature.contrib.hook.opentelemetry import TracingHook
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def _pair(text: str) -> tuple[float, float]:
    control, treatment = (float(x) for x in text.split(","))
    return control, treatment


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ofrep_url")
    parser.add_argument("otlp_traces_url")
    parser.add_argument("flag")
    parser.add_argument("--errors", type=_pair, default=(0.05, 0.05))
    parser.add_argument("--latency-ms", type=_pair, default=(10.0, 10.0))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    exporter = OTLPSpanExporter(endpoint=args.otlp_traces_url, timeout=10)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("checkout")

    api.set_provider(OFREPProvider(args.ofrep_url))
    api.add_hooks([TracingHook()])
    flags = api.get_client()
    rng = random.Random(args.seed)
    lock = threading.Lock()

    class Checkout(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            user = parse_qs(url.query).get("user", ["anonymous"])[0]
            with tracer.start_as_current_span(
                "GET /checkout",
                kind=SpanKind.SERVER,
                attributes={"http.request.method": "GET", "url.path": url.path},
            ) as span:
                new_flow = flags.get_boolean_value(
                    args.flag, False, EvaluationContext(targeting_key=user)
                )
                arm = 1 if new_flow else 0
                with lock:
                    failed = rng.random() < args.errors[arm]
                    pause = rng.lognormvariate(0, 0.25) * args.latency_ms[arm] / 1000
                time.sleep(pause)
                status = 500 if failed else 200
                span.set_attribute("http.response.status_code", status)
                if failed:
                    span.set_status(Status(StatusCode.ERROR))
            body = json.dumps({"user": user, "new_flow": new_flow}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Checkout)
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
    provider.shutdown()  # the spans still batched are exported before exit


if __name__ == "__main__":
    main()
