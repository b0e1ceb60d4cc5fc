"""The broker comes back empty and an app's producer makes the events topic first.

The controller is down while its broker loses its data. An app's producer is first
back: the events topic is made again (as a producer's auto-creation would, with the
broker's partition count, fewer than the controller recorded), and the app's events
make the new logs longer than the offsets stored in Redis. An offset compared with
the log's end alone would read these logs as the old ones and skip their first
records uncounted. The stored offsets carry the identity of the log they were counted
on (the topic's id and partition count), so when the controller comes back every
partition is held, those the new topic lacks too: a critical alert for each,
``/readyz`` not ready naming each, nothing counted; ``rolloutctl ingest reread`` then
counts the new logs from their start, exactly. On Apache Kafka and on the embedded
broker.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from controller.core.wire.bucketing import assign
from tests.scenarios.brokers.lost_broker import (
    FLAG,
    PARTITIONS,
    RestartableBroker,
    counted,
    held_alerts,
    lost_broker_world,
    ready,
    readyz,
    rolloutctl,
    started,
    stored_offsets,
)
from tests.scenarios.harness import manual_plan

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]
REMADE = 2
"""The partitions of the events topic the app's producer makes: fewer than recorded."""


@pytest.fixture(params=["kafka", "tansu"])
def remade_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RestartableBroker]:
    """A broker of the test's own, Apache Kafka or the embedded one, that comes back empty."""
    yield from started(RestartableBroker(tmp_path / "broker", kafka=request.param == "kafka"))


async def test_a_topic_an_app_made_again_first_is_held_whole_until_reread(
    remade_broker: RestartableBroker,
    redis_url: str,
    redis_namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = remade_broker
    async with lost_broker_world(
        broker.bootstrap, redis_url, redis_namespace, tmp_path, RC_INGEST__STALL_AFTER_SECONDS="600"
    ) as (world, url):
        # Given a rollout whose events are all counted on four partitions
        world.start_daemon()
        await world.start(FLAG, manual_plan())
        world.run_apps(FLAG, rate=2000)
        await world.until(lambda: world.events_sent >= 3000, timeout=60, what="events sent")
        await world.stop_apps()
        before = world.events_sent

        async def all_counted() -> bool:
            assert await counted(world) == before
            return True

        await world.until(all_counted, timeout=60, what="every event counted")
        stored = await stored_offsets(world)
        assert all(stored[p] for p in range(PARTITIONS)), stored
        state = world.state(FLAG)
        assert state is not None
        world.daemon.terminate()

        # When the broker comes back empty, and an app's producer makes the events topic
        # first, with fewer partitions, and fills each log past every stored offset
        broker.lose_data()
        events = world.topics["events"]
        await _make_topic(broker.bootstrap, events, REMADE)
        longest = max(o for o in stored.values() if o is not None)
        sent = await _produce(broker.bootstrap, events, state, pairs=2 * REMADE * longest)
        ends = await _log_ends(broker.bootstrap, events, REMADE)
        assert all(end > longest for end in ends.values()), (ends, stored)

        # and the controller comes back
        world.daemon.start()

        # Then every partition is held, those the new topic lacks too, a critical alert
        # for each naming another log
        def every_partition_alerted() -> list[dict[str, Any]] | None:
            alerts = held_alerts(world)
            alerted = {a["details"]["partition"] for a in alerts}
            return alerts if alerted == set(range(PARTITIONS)) else None

        alerts = await world.until(
            every_partition_alerted, timeout=120, what="an events_log_gap alert per partition"
        )
        for alert in alerts:
            details = alert["details"]
            assert alert["severity"] == "critical", alert
            assert details["stored_offset"] == stored[details["partition"]], alert
            assert details["changed"], alert
            assert details["fits"] == "reread", alert
        # and /readyz is not ready, naming each of them
        status, body = await readyz(url)
        assert status == 503, body
        assert all(f"p{p}:" in body["reason"] for p in range(PARTITIONS)), body
        # and nothing of the new logs is counted, nor are the stored offsets moved
        assert await counted(world) == before
        assert await stored_offsets(world) == stored

        # When an operator chooses to count the new topic from its start
        code = await asyncio.to_thread(
            rolloutctl, world, tmp_path / "keys", monkeypatch, "ingest", "reread"
        )
        assert code == 0, world.daemon.log_text()[-3000:]
        decision = await world.until(
            lambda: world.observed.decision_where(kind="ingest", outcome="applied"),
            timeout=30,
            what="the ingest decision",
        )
        assert decision["evidence"]["partitions"] == list(range(PARTITIONS)), decision

        # Then every event of the new topic is counted, once
        async def counted_exactly() -> bool:
            assert await counted(world) == before + sent
            return True

        await world.until(counted_exactly, timeout=90, what="the new topic counted")
        # and the daemon is ready again
        await world.until(lambda: ready(url), timeout=30, what="/readyz ready once resumed")
        assert world.daemon.running, world.daemon.log_text()[-3000:]


async def _make_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, state: dict[str, Any], *, pairs: int) -> int:
    """An app's exposures and requests for the flag, keyed by unit, each one acknowledged;
    how many events."""
    run = uuid.uuid4().hex[:12]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        sending = []
        for i in range(pairs):
            unit = f"u{i % 4000}"
            arm = assign(FLAG, state["salt"], unit, state["percent"])
            base = {
                "v": 1,
                "ts": int(time.time() * 1000),
                "flag": FLAG,
                "unit": unit,
                "arm": arm.value,
                "flag_version": state["version"],
            }
            for body in (
                {"type": "exposure", "id": f"x{run}-{i}"},
                {"type": "request", "id": f"r{run}-{i}", "error": False, "latency_ms": 12.5},
            ):
                value = orjson.dumps({**base, **body})
                sending.append(await producer.send(topic, key=unit.encode(), value=value))
        await asyncio.gather(*sending)
    finally:
        await producer.stop()
    return 2 * pairs


async def _log_ends(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        await consumer.stop()
    return {tp.partition: end for tp, end in ends.items()}
