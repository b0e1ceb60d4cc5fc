"""A cart service as a team would write it, with no code of the controller's, whose new flow
brings a new exception.

It evaluates its flag with OpenFeature through the OFREP provider and OpenFeature's
OpenTelemetry hook, and exports its spans with the OpenTelemetry SDK's OTLP/HTTP exporter.
Each request may fail in two ways, each recorded on the request's span by the SDK's own
``span.record_exception`` (an ``exception`` event with ``exception.type``,
``exception.message`` and ``exception.stacktrace``):

* in either flow, with the same rate, the inventory call times out (``TimeoutError`` raised
  in ``reserve``): the request fails (503);
* with the rate of its flow, pricing the cart misses the item (``KeyError('cart-N')``
  raised in ``price``, N the user's cart): the cart is priced at list price instead, and
  the request succeeds. A failure no error rate sees.

    python tests/otel/cart_app.py OFREP_URL OTLP_TRACES_URL FLAG \\
        [--timeouts RATE] [--missing CONTROL,TREATMENT] [--seed N]

``GET /checkout?user=ID`` serves one request for that user. Once listening it prints
``{"port": N}``; SIGTERM (or end of stdin) flushes the spans, prints how many requests of
each flow and exceptions of each type it recorded, and exits.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
from collections import Counter
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
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

LIST_PRICE = 100


def _pair(text: str) -> tuple[float, float]:
    control, treatment = (float(x) for x in text.split(","))
    return control, treatment


def reserve(user: str, times_out: bool) -> None:
    """The inventory call: it times out with the rate both flows share."""
    if times_out:
        raise TimeoutError(f"inventory for {user} took 1500 ms")


def price(cart: str, prices: dict[str, int], missing: bool) -> int:
    """The cart's price, from a price table the new flow keys by cart, and misses."""
    key = cart if missing else "default"
    return prices[key]


def checkout(span: Span, user: str, faults: tuple[bool, bool], seen: Counter[str]) -> int:
    """One request's work: its HTTP status, each exception recorded on its span."""
    times_out, missing = faults
    try:
        reserve(user, times_out)
    except TimeoutError as exc:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR))
        seen["TimeoutError"] += 1
        return 503
    try:
        price(f"cart-{user.rsplit('-', 1)[-1]}", {"default": LIST_PRICE}, missing)
    except KeyError as exc:  # priced at list price: the customer sees nothing wrong
        span.record_exception(exc)
        seen["KeyError"] += 1
    return 200


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ofrep_url")
    parser.add_argument("otlp_traces_url")
    parser.add_argument("flag")
    parser.add_argument("--timeouts", type=float, default=0.05)
    parser.add_argument("--missing", type=_pair, default=(0.0, 0.0))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    provider = TracerProvider(resource=Resource.create({"service.name": "cart"}))
    exporter = OTLPSpanExporter(endpoint=args.otlp_traces_url, timeout=10)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("cart")

    api.set_provider(OFREPProvider(args.ofrep_url))
    api.add_hooks([TracingHook()])
    flags = api.get_client()
    rng = random.Random(args.seed)
    lock = threading.Lock()
    seen: Counter[str] = Counter()

    class Cart(BaseHTTPRequestHandler):
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
                    faults = rng.random() < args.timeouts, rng.random() < args.missing[arm]
                    seen["new flow" if new_flow else "old flow"] += 1
                    status = checkout(span, user, faults, seen)
                span.set_attribute("http.response.status_code", status)
            body = json.dumps({"user": user, "new_flow": new_flow}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Cart)
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
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main()
