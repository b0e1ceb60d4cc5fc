"""The daemon reading the Collector's OTLP topic: exact across a kill -9 and a re-delivery.

The real ``rollout-controller run``, with ``otlp.enabled``, reads records the
Collector's Kafka exporter writes (``otlp_proto``) of spans the real OpenTelemetry
SDK recorded, for flags whose rollouts are stored. It is killed with SIGKILL at a
random point of the stream (the rest is sent while it is down) and started again;
then a third of the stream is sent again, to other partitions. The aggregates
equal the count made from the SDK's spans after each.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.adapters.redis.cells.layout import source_meta_key
from controller.adapters.redis.client import RedisClient
from controller.core.trust import signing
from controller.ctl.app import main
from controller.settings import RedisSettings
from tests.integration.http.test_http import wait_status
from tests.support.backing.services import free_port
from tests.support.clients.ofrep import flag_rollout
from tests.support.clients.ofrep import store as store_rollouts
from tests.support.controller_process import ControllerProcess, controller_env
from tests.support.otel.otlp_exports import Recorder
from tests.support.otel.otlp_kafka import (
    assert_counts,
    counted,
    evaluated_requests,
    exports,
    reference,
    total,
)
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TopicFactory = Callable[..., Awaitable[str]]
PARTITIONS = 3
FLAGS = {"otlp-checkout": 4, "otlp-search": 4}
"""Each flag under rollout, and its version (the evaluations name it too)."""


class OtlpDaemon:
    """A test's topics, namespace and daemon reading an OTLP spans topic."""

    def __init__(self, bootstrap: str, redis_url: str, prefix: str, topics: dict[str, str]) -> None:
        self.bootstrap, self.topic = bootstrap, topics["spans"]
        self.redis = RedisSettings(url=redis_url, key_prefix=prefix)
        self.env = controller_env(
            bootstrap=bootstrap,
            redis_url=redis_url,
            prefix=prefix,
            events=topics["events"],
            dlq=topics["dlq"],
        ) | {
            "RC_OTLP__ENABLED": "true",
            "RC_OTLP__SPANS_TOPIC": topics["spans"],
            "RC_OTLP__LOGS_TOPIC": topics["logs"],
            "RC_OTLP__MAX_BATCH_RECORDS": "5",
            "RC_HTTP__PORT": str(free_port()),
            "RC_HTTP__HOST": "127.0.0.1",
        }
        self.ends = dict.fromkeys(range(PARTITIONS), 0)

    async def produce(
        self, values: Sequence[bytes], partitions: Sequence[int], *, pace: float = 0
    ) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await producer.start()
        try:
            for index, value in enumerate(values):
                partition = partitions[index % len(partitions)]
                written = await (await producer.send(self.topic, value, partition=partition))
                self.ends[partition] = max(self.ends[partition], written.offset + 1)
                if pace and index % 10 == 9:
                    await asyncio.sleep(pace)
        finally:
            await producer.stop()

    def stores(self, client: RedisClient) -> tuple[RedisAggregateStore, RedisAggregateStore]:
        """The store gates read (the events topic's), and the one the OTLP topic flushes."""
        events = self.env["RC_TOPICS__EVENTS"]
        reads = RedisAggregateStore(client, settings=self.redis, topic=events)
        source = RedisAggregateStore(client, settings=self.redis, topic=events, source=self.topic)
        return reads, source

    async def counted(self) -> int:
        async with connect(self.redis) as client:
            reads, _ = self.stores(client)
            return counted(await reads.read_many([(f, {v}) for f, v in FLAGS.items()]))

    async def caught_up(self, daemon: ControllerProcess) -> None:
        """Wait until the offset stored for each partition is the end of what was produced."""
        async with connect(self.redis) as client:
            _, source = self.stores(client)

            async def stored() -> bool:
                offsets = {p: await source.offset(p) or 0 for p in range(PARTITIONS)}
                assert offsets == self.ends, (
                    f"stored {offsets}, produced {self.ends}\n{daemon.log_text()[-3000:]}"
                )
                return True

            await eventually(stored, timeout=90, what="every OTLP record flushed")


@pytest.fixture
async def otlp_daemon(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory, redis_namespace: str
) -> OtlpDaemon:
    topics = {
        "events": await topic_factory("events", partitions=2),
        "dlq": await topic_factory("dlq", partitions=1),
        "spans": await topic_factory("otlp-spans", partitions=PARTITIONS),
        "logs": await topic_factory("otlp-logs", partitions=1),
    }
    async with connect(RedisSettings(url=redis_url)) as client:
        rollouts = [flag_rollout(flag, 50, version=v) for flag, v in FLAGS.items()]
        await store_rollouts(client, redis_namespace, rollouts)
    return OtlpDaemon(kafka_bootstrap, redis_url, redis_namespace, topics)


async def test_kill_9_mid_stream_and_a_batch_sent_again_count_exactly(
    otlp_daemon: OtlpDaemon, tmp_path: Path
) -> None:
    seed = uuid.uuid4().int % 2**32
    rng = random.Random(seed)
    recorder = Recorder()
    evaluated_requests(recorder, 6000, flags=list(FLAGS), version=4, seed=seed)
    spans = recorder.spans()
    want = reference(spans, FLAGS)
    values = exports(spans, 20)  # 300 records of 20 spans, 40 events a record: 12,000 events
    # The kill falls inside the stream whatever the machine's speed: the records after
    # ``cut`` are sent only once the daemon is dead, and it is killed while reading the rest.
    cut = rng.randrange(150, 250)
    target = rng.randrange(1000, cut * 40 - 1000)
    daemon = ControllerProcess(env=otlp_daemon.env, log_path=tmp_path / "controller.log")
    daemon.start()
    try:
        # Given the daemon reading the stream as the Collector writes it
        producing = asyncio.create_task(
            otlp_daemon.produce(values[:cut], range(PARTITIONS), pace=0.02)
        )

        async def reached() -> bool:
            got = await otlp_daemon.counted()
            assert got >= target, f"{got} of {target} (seed {seed})\n{daemon.log_text()[-2000:]}"
            return True

        await eventually(reached, timeout=90, what=f"{target} events counted")
        # When it is killed with SIGKILL mid-stream, and started again
        daemon.kill()
        assert await otlp_daemon.counted() < total(want), "killed after the whole stream"
        await producing
        await otlp_daemon.produce(values[cut:], range(PARTITIONS))
        daemon.start()
        await otlp_daemon.caught_up(daemon)
        # Then every evaluation counts once: nothing lost, nothing replayed twice
        async with connect(otlp_daemon.redis) as client:
            reads, _ = otlp_daemon.stores(client)
            await assert_counts(reads, want)
        # When the Collector sends a third of the stream again, to other partitions
        again = values[: len(values) // 3]
        await otlp_daemon.produce(again, [1, 2, 0])
        await otlp_daemon.caught_up(daemon)
        # Then it counts nothing more
        async with connect(otlp_daemon.redis) as client:
            reads, _ = otlp_daemon.stores(client)
            await assert_counts(reads, want)
        # And /readyz names the OTLP partitions this instance ingests
        port = otlp_daemon.env["RC_HTTP__PORT"]
        ready = (await wait_status(f"http://127.0.0.1:{port}/readyz", 200)).json()
        assert ready["otlp_spans_partitions"] == list(range(PARTITIONS)), ready
        assert ready["otlp_logs_partitions"] == [0], ready
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
    progress = [line for line in daemon.log_text().splitlines() if "ingest_progress" in line]
    assert any('"otlp_spans"' in line for line in progress), progress[-3:]


async def test_an_otlp_partition_whose_log_lost_what_was_counted_is_held_until_reread(
    otlp_daemon: OtlpDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given partition 0 of the spans topic stored as read up to offset 1,000, which its log
    # (a broker that came back empty) does not hold
    private, public = signing.generate_key()
    otlp_daemon.env["RC_ENGINE__OPERATOR_KEYS"] = orjson.dumps({"ops": public}).decode()
    async with connect(otlp_daemon.redis) as client:
        meta = source_meta_key(
            otlp_daemon.redis.key_prefix, otlp_daemon.env["RC_TOPICS__EVENTS"], otlp_daemon.topic, 0
        )
        await client.hset(meta, mapping={"epoch": 0, "offset": 1000})
    recorder = Recorder()
    evaluated_requests(recorder, 600, flags=list(FLAGS), version=4, seed=7)
    spans = recorder.spans()
    values = exports(spans, 20)
    daemon = ControllerProcess(env=otlp_daemon.env, log_path=tmp_path / "controller.log")
    daemon.start()
    try:
        # When the Collector writes records to it
        await otlp_daemon.produce(values, [0])
        # Then the partition is held: /readyz says so and names the command, nothing is counted
        port = otlp_daemon.env["RC_HTTP__PORT"]

        async def held() -> str:
            async with httpx.AsyncClient(timeout=5) as http:
                try:
                    answer = await http.get(f"http://127.0.0.1:{port}/readyz")
                except httpx.TransportError as exc:
                    raise AssertionError(f"not listening yet: {exc}") from exc
            reason: str = answer.json().get("reason", "")
            assert answer.status_code == 503, answer.text
            assert f"{otlp_daemon.topic} events partitions [0] held" in reason, reason
            return reason

        reason = await eventually(held, timeout=60, what="the partition held")
        assert f"`rolloutctl ingest reread --topic {otlp_daemon.topic}` fits p0" in reason, reason
        daemon.wait_for_log("events_partition_held")
        assert await otlp_daemon.counted() == 0
        # When an operator chooses to read it again from its start, with the command line
        # the hold names (its --topic is the held topic, not where the command is sent)
        key = tmp_path / "ops.key"
        key.write_text(signing.private_key_text(private), encoding="ascii")
        key.chmod(0o600)
        for name in ("RC_TOPICS__COMMANDS", "RC_TOPICS__DECISIONS"):
            monkeypatch.setenv(name, otlp_daemon.env[name])
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", otlp_daemon.bootstrap)
        argv = ["ingest", "reread", "--topic", otlp_daemon.topic, "--partition", "0"]
        signed = ["--key", str(key), "--key-id", "ops", "--actor", "ops", "--timeout", "60"]
        assert await asyncio.to_thread(main, [*argv, *signed]) == 0, daemon.log_text()[-3000:]
        # Then every record is counted once, and the controller is ready again
        await otlp_daemon.caught_up(daemon)
        async with connect(otlp_daemon.redis) as client:
            reads, _ = otlp_daemon.stores(client)
            await assert_counts(reads, reference(spans, FLAGS))
        await wait_status(f"http://127.0.0.1:{port}/readyz", 200)
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
