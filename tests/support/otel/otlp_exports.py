"""OTLP exports as real OpenTelemetry exporters write them, for the intake's tests.

Spans and log records are recorded by the OpenTelemetry SDK (in memory), flag
evaluations by OpenFeature's own ``TracingHook``, and the exports are encoded
by the OTLP exporter's own encoders (``encode_spans``, ``encode_logs``): what
the decoders read here is what an app's exporter sends. The JSON encoding is
protobuf's JSON mapping (``MessageToDict``: lowerCamelCase keys, 64-bit
integers as strings) with the two changes OTLP/JSON makes to it: trace and
span ids as hex, not base64, and enums as integers.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.hook.opentelemetry import TracingHook
from openfeature.evaluation_context import EvaluationContext
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Tracer

_IDS = frozenset({"traceId", "spanId", "parentSpanId"})
DOMAIN = "otlp-exports"
"""The OpenFeature domain of the tests' client, so the global provider is left alone."""


class Recorder:
    """An app's telemetry: a tracer and a logger recording in memory, one resource."""

    def __init__(self, resource: Mapping[str, Any] | None = None) -> None:
        attributes = dict(resource) if resource is not None else {"service.name": "shop"}
        self._spans = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create(attributes))
        self.provider.add_span_processor(SimpleSpanProcessor(self._spans))
        self.tracer: Tracer = self.provider.get_tracer("tests.otlp")
        self._logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        self._loggers = LoggerProvider(resource=Resource.create(attributes))
        self._loggers.add_log_record_processor(SimpleLogRecordProcessor(self._logs))
        self.logger = self._loggers.get_logger("tests.otlp")

    @property
    def logger_provider(self) -> LoggerProvider:
        """What an app's logging handler (``LoggingHandler``) writes its records through."""
        return self._loggers

    def spans(self) -> list[ReadableSpan]:
        return list(self._spans.get_finished_spans())

    def records(self) -> list[ReadableLogRecord]:
        return list(self._logs.get_finished_logs())

    @contextmanager
    def request(self, name: str = "GET /checkout", status: int = 200) -> Iterator[None]:
        """A SERVER span, current while the block runs, with its HTTP status."""
        with self.tracer.start_as_current_span(name, kind=SpanKind.SERVER) as span:
            yield
            span.set_attribute("http.response.status_code", status)


def openfeature_client(flags: Mapping[str, str]) -> OpenFeatureClient:
    """A client serving each flag's variant (treatment: True, control: False, any other
    name: True), traced by OpenFeature's ``TracingHook`` (a ``feature_flag.evaluation``
    event on the current span).

    A variant outside the two is one of the flag's own variants, so the provider serves
    it: an in-memory flag whose default names no variant fails to evaluate instead, and
    the app serves its own default with no variant at all."""
    provider = InMemoryProvider(
        {
            flag: InMemoryFlag(default_variant=variant, variants=_variants(variant))
            for flag, variant in flags.items()
        }
    )
    api.set_provider(provider, domain=DOMAIN)
    client = api.get_client(domain=DOMAIN)
    client.add_hooks([TracingHook()])
    return client


def _variants(served: str) -> dict[str, bool]:
    return {"treatment": True, "control": False} | ({} if served == "control" else {served: True})


def evaluate(client: OpenFeatureClient, flag: str, unit: str | None = None) -> bool:
    context = EvaluationContext(targeting_key=unit) if unit is not None else None
    return client.get_boolean_value(flag, False, context)


def traces_proto(spans: Sequence[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


def logs_proto(records: Sequence[ReadableLogRecord]) -> bytes:
    return encode_logs(records).SerializeToString()


def traces_json(spans: Sequence[ReadableSpan], *, enum_names: bool = False) -> bytes:
    return otlp_json(encode_spans(spans), enum_names=enum_names)


def logs_json(records: Sequence[ReadableLogRecord]) -> bytes:
    return otlp_json(encode_logs(records))


def otlp_json(message: Message, *, enum_names: bool = False) -> bytes:
    """A message in OTLP/JSON: protobuf's JSON mapping with hex ids and integer enums."""
    tree = MessageToDict(message, use_integers_for_enums=not enum_names)
    return orjson.dumps(hex_ids(tree))


def hex_ids(node: Any) -> Any:
    """``node`` with each trace and span id in hex, as OTLP/JSON writes them."""
    if isinstance(node, dict):
        return {
            key: base64.b64decode(value).hex() if key in _IDS else hex_ids(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [hex_ids(value) for value in node]
    return node


def export_copies(flag: str, requests: int, copies: int) -> list[bytes]:
    """``copies`` gzip'd exports of ``requests`` server spans each (one in ten failed), every
    one with ``flag`` evaluated, as the SDK's exporter writes them; each copy with its own
    trace ids (at most 256)."""
    recorder = Recorder()
    client = openfeature_client({flag: "treatment"})
    for i in range(requests):
        with recorder.request(status=500 if i % 10 == 0 else 200):
            evaluate(client, flag, f"user-{i}")
    base = traces_proto(recorder.spans())
    bodies = []
    for copy in range(copies):
        request = ExportTraceServiceRequest.FromString(base)
        for span in request.resource_spans[0].scope_spans[0].spans:
            span.trace_id = bytes([copy]) + span.trace_id[1:]
        bodies.append(gzip.compress(request.SerializeToString(), compresslevel=1))
    return bodies
