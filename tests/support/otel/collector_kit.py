"""A real OpenTelemetry Collector in tests, and what it wrote to Kafka read back.

The Collector is the one ``make otelcol`` builds, run with ``ops/otelcol/config.yaml``
(:mod:`controller.dev.otelcol`). What it wrote is read here straight from the topic
with OpenTelemetry's own protobuf classes, not through the controller's translator, so
that the reference a test compares the aggregates with owes nothing to the code under
test: one exposure and one request outcome per evaluation of a flag, once per span
however often a record carrying it was written. An evaluation is an event on its request's
span (Python, Go, Java) or a log record in its request's span (Node's ``EventHook``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from controller.adapters.redis.aggregates import RedisAggregateStore
from controller.core.stats import FlagAggregates
from tests.support.otel.otlp_kafka import EVALUATION, Expected
from tests.support.waiting import eventually

APP_ATTRIBUTE = "app.flag"
"""A resource attribute each test app is started with (``OTEL_RESOURCE_ATTRIBUTES``), so
that a span without an evaluation still says which app served it."""


async def read_topic(bootstrap: str, topic: str, count: int) -> tuple[list[bytes], dict[int, int]]:
    """Every record's value on ``topic`` (``count`` partitions), from its start to its end
    now; and those ends."""
    stamped, ends = await read_stamped(bootstrap, topic, count)
    return [value for _, value in stamped], ends


async def read_stamped(
    bootstrap: str, topic: str, count: int
) -> tuple[list[tuple[int, bytes]], dict[int, int]]:
    """Every record on ``topic`` (``count`` partitions) from its start to its end now, as
    (timestamp in ms, value) in each partition's order; and those ends."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        stamped: list[tuple[int, bytes]] = []

        async def read_to_end() -> bool:
            batch = await consumer.getmany(*partitions, timeout_ms=500)
            stamped.extend(
                (r.timestamp, r.value) for records in batch.values() for r in records if r.value
            )
            left = {tp: ends[tp] - await consumer.position(tp) for tp in partitions}
            assert all(n <= 0 for n in left.values()), f"left to read: {left}"
            return True

        await eventually(read_to_end, timeout=60, what=f"{topic} read to its end")
        return stamped, {tp.partition: end for tp, end in ends.items()}
    finally:
        await consumer.stop()


def _value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, object]:
    return {pair.key: _value(pair.value) for pair in pairs}


@dataclass
class Written:
    """What a Collector wrote: requests per app, and the evaluations of each flag."""

    spans: Counter[str] = field(default_factory=Counter)
    """Distinct request spans by the app that served them."""
    copies: int = 0
    """Spans written more than once (a re-delivered batch): counted once here."""
    cells: dict[tuple[str, str], Expected] = field(default_factory=dict)
    """Per (flag, variant): exposures, request outcomes, errors, latency, units."""

    def add(self, app: str, span: Span) -> None:
        self.spans[app] += 1
        for event in span.events:
            self.evaluated(_attributes(event.attributes), span, name=event.name)

    def evaluated(self, values: dict[str, object], span: Span, *, name: str) -> None:
        """Count an evaluation (``values``, its attributes) in its request ``span``."""
        if name != EVALUATION or "feature_flag.result.variant" not in values:
            return
        attributes = _attributes(span.attributes)
        status = attributes.get("http.response.status_code")
        error = span.status.code == Status.STATUS_CODE_ERROR or (
            isinstance(status, int) and status >= 500
        )
        key = (str(values["feature_flag.key"]), str(values["feature_flag.result.variant"]))
        cell = self.cells.setdefault(key, Expected())
        cell.exposures += 1
        cell.requests += 1
        cell.errors += error
        cell.latency_sum_ms += (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
        cell.units.add(str(values["feature_flag.context.id"]))


def written_spans(values: list[bytes]) -> Written:
    """Decode the ``otlp_proto`` records of a spans topic into a :class:`Written`."""
    written = Written()
    for app, span in _distinct_spans(values, written):
        written.add(app, span)
    return written


def written_logs(span_values: list[bytes], log_values: list[bytes]) -> Written:
    """Decode the ``otlp_proto`` records of a logs topic, each evaluation a log record in
    its request's span, joined to that span on the spans topic; once per log record."""
    written = Written()
    spans: dict[bytes, Span] = {}
    for app, span in _distinct_spans(span_values, written):
        written.spans[app] += 1
        spans[span.span_id] = span
    seen = set[tuple[bytes, int]]()
    for value in log_values:
        export = ExportLogsServiceRequest.FromString(value)
        for resource_logs in export.resource_logs:
            for scope in resource_logs.scope_logs:
                for record in scope.log_records:
                    once = (record.span_id, record.time_unix_nano)
                    if record.event_name != EVALUATION or once in seen:
                        continue
                    seen.add(once)
                    request = spans.get(record.span_id)
                    assert request is not None, f"no request span {record.span_id.hex()} written"
                    written.evaluated(_attributes(record.attributes), request, name=EVALUATION)
    return written


def _distinct_spans(values: list[bytes], written: Written) -> Iterator[tuple[str, Span]]:
    """Each span of the records once, with the app that served it; copies are counted."""
    seen = set[bytes]()
    for value in values:
        export = ExportTraceServiceRequest.FromString(value)
        for resource_spans in export.resource_spans:
            app = str(_attributes(resource_spans.resource.attributes).get(APP_ATTRIBUTE))
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    if span.span_id in seen:
                        written.copies += 1
                        continue
                    seen.add(span.span_id)
                    yield app, span


async def assert_counted(
    store: RedisAggregateStore, flag: str, version: int, written: Written
) -> FlagAggregates:
    """The aggregates of ``flag`` at ``version`` are exactly what the Collector wrote."""
    got = await store.read(flag, {version})
    for arm, agg in (("treatment", got.treatment), ("control", got.control)):
        want = written.cells.get((flag, arm), Expected())
        seen = (agg.exposures, agg.requests, agg.errors, agg.latency_count)
        wanted = (want.exposures, want.requests, want.errors, want.requests)
        assert seen == wanted, (arm, seen, "written", wanted)
        assert abs(agg.latency_sum_ms - want.latency_sum_ms) <= 1e-6 * max(
            1.0, want.latency_sum_ms
        ), arm
        assert abs(agg.units - len(want.units)) <= max(2, round(0.03 * len(want.units))), arm
    return got
