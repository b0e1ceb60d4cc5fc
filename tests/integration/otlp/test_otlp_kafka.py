"""The Collector's OTLP topics through the real ingest: a real broker, a real Redis.

Records are what the Collector's Kafka exporter writes (``otlp_proto`` or ``otlp_json``)
of spans the real OpenTelemetry SDK recorded; one topic is read in process by the
daemon's own :class:`Ingest`, consumer, store and dead-letter publisher, with the
:class:`OtlpFolder` the daemon gives it. The aggregates are compared with a count made
from the SDK's spans; a batch sent again (to other partitions, under new offsets)
counts once; hostile records are dead-lettered with their reasons and the rest of
their export counted: a span protobuf or JSON cannot read (text that is not UTF-8,
nesting past protobuf's limit) is dead-lettered alone, its siblings counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.sdk.trace import ReadableSpan

from controller.adapters.kafka import DeadLetterPublisher, EventConsumer, Producer
from controller.adapters.otlp import decode_traces_flat
from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.core.telemetry import FlagRules, Translator, decode_traces_json
from controller.daemon.ingest import Ingest, OtlpFolder
from controller.daemon.metrics import Metrics
from controller.settings import IngestSettings, KafkaSettings, RedisSettings
from tests.integration.rig import every_record
from tests.support.otel.otlp_exports import Recorder
from tests.support.otel.otlp_kafka import (
    assert_counts,
    evaluated_requests,
    exports,
    hooked_requests,
    reference,
    refusals,
    total,
)
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TopicFactory = Callable[..., Awaitable[str]]
PARTITIONS = 3
FLAGS = {"checkout": 3, "search": 7}
RULES = {flag: FlagRules(flag=flag, version=version) for flag, version in FLAGS.items()}
MAX_RECORD_BYTES = 8 * 1024 * 1024


class OtlpTopic:
    """One OTLP topic of a test, ingested in process as the daemon ingests it."""

    def __init__(self, bootstrap: str, redis_url: str, prefix: str, topic: str, dlq: str) -> None:
        self.bootstrap, self.topic, self.dlq = bootstrap, topic, dlq
        self.redis = RedisSettings(url=redis_url, key_prefix=prefix)
        self.kafka = KafkaSettings(
            bootstrap_servers=bootstrap,
            group_id=f"g-{prefix}",
            session_timeout_ms=3000,
            heartbeat_interval_ms=300,
        )
        self.ingest: Ingest | None = None
        self.metrics = Metrics()
        self.ends: dict[int, int] = dict.fromkeys(range(PARTITIONS), 0)
        """Each partition's end offset, as the broker acknowledged what was produced."""

    @asynccontextmanager
    async def running(self, *, json: bool = False) -> AsyncIterator[Ingest]:
        folder = OtlpFolder(
            topic=self.topic,
            decode=decode_traces_json if json else decode_traces_flat,
            translator=Translator(RULES.get),
            max_record_bytes=MAX_RECORD_BYTES,
            ignored=self.metrics.otlp.ignored.labels("kafka", "traces").inc,
        )
        settings = IngestSettings(fetch_timeout_ms=100, max_batch_records=7)
        self.ingest = ingest = Ingest(
            settings=settings, metrics=self.metrics, folder=folder, role="otlp_spans"
        )
        consumer = EventConsumer(
            kafka=self.kafka,
            topic=self.topic,
            listener=ingest,
            start_from="earliest",
            group_id=f"{self.kafka.group_id}.otlp_spans",
        )
        async with connect(self.redis) as client, Producer(kafka=self.kafka) as producer:
            store = self.store(client)
            letters = DeadLetterPublisher(producer=producer, topic=self.dlq)
            async with consumer:
                task = asyncio.create_task(
                    ingest.run(source=consumer, store=store, dead_letters=letters)
                )
                try:
                    yield ingest
                finally:
                    ingest.stop()
                    await asyncio.wait_for(task, 30)

    def store(self, client: Any, *, source: bool = True) -> RedisAggregateStore:
        """The store the ingest flushes through, or (``source=False``) the one gates read."""
        return RedisAggregateStore(
            client, settings=self.redis, topic="events", source=self.topic if source else None
        )

    async def produce(
        self,
        values: Sequence[bytes],
        *,
        partitions: Sequence[int] | None = None,
        compression: str | None = None,
    ) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            compression_type=compression,
            max_request_size=16 * 1024 * 1024,
        )
        await producer.start()
        try:
            sent = []
            for index, value in enumerate(values):
                partition = None if partitions is None else partitions[index % len(partitions)]
                sent.append(await producer.send(self.topic, value=value, partition=partition))
            for written in await asyncio.gather(*sent):
                self.ends[written.partition] = max(self.ends[written.partition], written.offset + 1)
        finally:
            await producer.stop()

    async def caught_up(self) -> None:
        """Wait until every partition's offset stored in Redis is the end of what was produced:
        everything counted (a positive signal; the offsets the broker acknowledged say where
        the end is, which its answer to a list-offsets request may not, on every broker)."""
        async with connect(self.redis) as client:
            store = self.store(client)

            async def stored() -> bool:
                offsets = {p: await store.offset(p) or 0 for p in range(PARTITIONS)}
                assert offsets == self.ends, f"stored {offsets}, produced {self.ends}"
                return True

            await eventually(stored, timeout=60, what="every record of the topic flushed")

    def ignored(self) -> float:
        """The evaluations of flags no rollout published, as the metric counted them."""
        labels = {"path": "kafka", "signal": "traces"}
        found = self.metrics.registry.get_sample_value(
            "rollout_otlp_ignored_evaluations_total", labels
        )
        return found or 0.0

    async def every_letter(self) -> list[Any]:
        """Every dead letter on the DLQ now (after :meth:`caught_up` every letter is there:
        ingest publishes them before it flushes)."""
        return await every_record(self.bootstrap, self.dlq)

    async def letters(self, expected: int) -> list[Any]:
        consumer = AIOKafkaConsumer(
            self.dlq, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        found: list[Any] = []
        try:

            async def read() -> bool:
                batch = await consumer.getmany(timeout_ms=300)
                found.extend(r for records in batch.values() for r in records)
                assert len(found) >= expected, f"{len(found)} dead letters of {expected}"
                return True

            await eventually(read, timeout=30, what=f"{expected} dead letters")
        finally:
            await consumer.stop()
        return found


@pytest.fixture
async def otlp(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory, redis_namespace: str
) -> OtlpTopic:
    topic = await topic_factory("otlp-spans", partitions=PARTITIONS)
    dlq = await topic_factory("otlp-dlq", partitions=1)
    return OtlpTopic(kafka_bootstrap, redis_url, redis_namespace, topic, dlq)


def recorded(seed: int, *, unknown: int = 0) -> list[ReadableSpan]:
    """Requests of both flags, some evaluated through OpenFeature's own hook, some of a flag
    no rollout knows."""
    recorder = Recorder()
    evaluated_requests(recorder, 500, flags=list(FLAGS), version=FLAGS["checkout"], seed=seed)
    hooked_requests(recorder, 40, flag="search", variant="control", seed=seed)
    if unknown:
        evaluated_requests(recorder, unknown, flags=["not-rolled-out"], version=1, seed=seed)
    return recorder.spans()


@pytest.mark.parametrize("encoding", ["otlp_proto", "otlp_json"])
async def test_sdk_spans_count_exactly_and_a_batch_sent_again_counts_once(
    otlp: OtlpTopic, encoding: str
) -> None:
    spans = recorded(11, unknown=12)
    want = reference(spans, FLAGS)
    values = exports(spans, 20, json=encoding == "otlp_json")
    async with otlp.running(json=encoding == "otlp_json") as ingest:
        # Given the Collector's records of the SDK's spans, over every partition
        await otlp.produce(values, partitions=range(PARTITIONS))
        await otlp.caught_up()
        # Then each evaluation of a known flag is an exposure and a request outcome
        async with connect(otlp.redis) as client:
            await assert_counts(otlp.store(client, source=False), want)
        assert ingest.stats.events == total(want)
        # and each evaluation of a flag no rollout published is ignored: counted apart,
        # neither refused nor dead-lettered (an app's ordinary flags are no error)
        assert otlp.ignored() == 12
        assert await otlp.every_letter() == []
        # When the Collector sends a third of the batch again, to other partitions
        again = values[: len(values) // 3]
        await otlp.produce(again, partitions=[1, 2, 0])
        await otlp.caught_up()
        # Then nothing more is counted: every copy is named a duplicate
        async with connect(otlp.redis) as client:
            await assert_counts(otlp.store(client, source=False), want)
        assert ingest.stats.events == total(want)
        assert ingest.stats.duplicates == total(reference(spans[: 20 * len(again)], FLAGS))


def _deep(depth: int) -> AnyValue:
    value = AnyValue(string_value="bottom")
    for _ in range(depth):
        value = AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=value)]))
    return value


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _too_deep_to_parse(depth: int) -> bytes:
    """One more ResourceSpans whose span has an attribute nested ``depth`` key-value lists
    deep, written by hand (protobuf's own classes refuse to build it)."""
    value = _field(1, b"bottom")  # AnyValue.string_value
    for _ in range(depth):  # AnyValue.kvlist_value -> KeyValueList.values -> KeyValue
        value = _field(6, _field(1, _field(1, b"k") + _field(2, value)))
    attribute = _field(1, b"x") + _field(2, value)
    span = _field(9, attribute)  # Span.attributes
    return _field(1, _field(2, _field(2, span)))  # resource_spans.scope_spans.spans


async def test_hostile_records_are_dead_lettered_with_reasons_and_the_rest_counted(
    otlp: OtlpTopic,
) -> None:
    spans = recorded(23, unknown=3)  # three spans of an unknown flag, among good ones
    chunks = [spans[i : i + 30] for i in range(0, len(spans), 30)]
    values = [encode_spans(chunk).SerializeToString() for chunk in chunks]
    # One span whose name is not UTF-8 (so protobuf refuses the whole export), beside one
    # carrying a value nested 12 deep and a 64 KiB string it does not read: only the
    # first is refused, alone; the second is counted.
    bad = encode_spans(chunks[1])
    bad.resource_spans[0].scope_spans[0].spans[4].name = "MARK-NOT-UTF-8"
    unread = bad.resource_spans[0].scope_spans[0].spans[6].attributes
    unread.add(key="deep", value=_deep(12))
    unread.add(key="exception.stacktrace", value=AnyValue(string_value="x" * 65_536))
    values[1] = bad.SerializeToString().replace(b"MARK-NOT-UTF-8", b"\xff" * 14)
    wide = encode_spans(chunks[2])
    attributes = wide.resource_spans[0].scope_spans[0].spans[5].attributes
    for i in range(10_000):
        attributes.add(key=f"a{i}", value=AnyValue(int_value=i))
    values[2] = wide.SerializeToString()
    dropped = {id(chunks[1][4]), id(chunks[2][5])}
    # A span nested past what protobuf parses: refused alone, its 30 siblings counted.
    values[3] = encode_spans(chunks[3]).SerializeToString() + _too_deep_to_parse(120)
    hostile = [
        values[0],
        b"not an OTLP export at all",
        *values[1:],
        b"\x00" * (9 * 1024 * 1024),  # 9 MiB, a few KiB on the wire once gzip'd
    ]
    async with otlp.running() as ingest:
        await otlp.produce(hostile, partitions=[0], compression="gzip")
        await otlp.caught_up()
        letters = await otlp.every_letter()
        assert refusals(letters) == {
            "malformed": 3,  # the garbage record, the span not UTF-8, the one past the depth
            "oversize": 2,  # the 9 MiB record, the span with 10,000 attributes
        }
        assert otlp.ignored() == 3  # the evaluations of a flag no rollout published
        items = {
            dict(r.headers).get("otlp.item"): r
            for r in letters
            if dict(r.headers)["rc.reason"] == b"malformed"
        }
        assert set(items) == {None, b"4", b"30"}
        assert items[b"4"].value == values[1]  # the record, with its one refused span
        oversize = next(r for r in letters if dict(r.headers)["rc.reason"] == b"oversize")
        assert dict(oversize.headers)["rc.source.topic"] == otlp.topic.encode()
        counted = [s for s in spans if id(s) not in dropped]
        async with connect(otlp.redis) as client:
            await assert_counts(otlp.store(client, source=False), reference(counted, FLAGS))
            rejects = await otlp.store(client, source=False).rejects()
        assert rejects == {"malformed": 3, "oversize": 2}
        assert ingest.stats.events == total(reference(counted, FLAGS))


async def test_hostile_otlp_json_records_are_dead_lettered_and_the_rest_counted(
    otlp: OtlpTopic,
) -> None:
    spans = recorded(29)
    values = exports(spans, 60, json=True)
    # One span of the first record names itself with a lone surrogate (no UTF-8 text):
    # refused alone, with a letter of its own; its 59 siblings counted.
    tree = orjson.loads(values[0])
    tree["resourceSpans"][0]["scopeSpans"][0]["spans"][2]["name"] = "MARK"
    values[0] = orjson.dumps(tree).replace(b'"MARK"', b'"\\ud800"')
    hostile = [
        b"[" * 200_000,  # nested past any bound: refused before it is parsed
        b'{"resourceSpans": "not a list"}',  # wrong types
        b"\x1f\x8b\x08\x00 not json",
        *values,
    ]
    async with otlp.running(json=True) as ingest:
        await otlp.produce(hostile, partitions=[0, 1, 2])
        await otlp.caught_up()
        letters = await otlp.letters(4)
        assert refusals(letters) == {"malformed": 4}
        [lone] = [r for r in letters if dict(r.headers).get("otlp.item") == b"2"]
        assert lone.value == values[0]
        counted = spans[:2] + spans[3:]
        async with connect(otlp.redis) as client:
            await assert_counts(otlp.store(client, source=False), reference(counted, FLAGS))
        assert ingest.stats.events == total(reference(counted, FLAGS))
