"""Every loss of the broker's data is alerted, again while it lasts, and /readyz says what fits.

The broker (pinned to one port; a fresh Apache Kafka node, or tansu with memory storage)
loses its data three times under a counted rollout. Each time, the critical
``events_log_gap`` alert of every events partition reaches the alerts topic the daemon
creates again (it races that creation, and is retried until the broker has it), and is
raised again while the partitions stay held; ``/readyz`` names ``rolloutctl ingest
reread`` as the command that fits an empty broker. The operator's reread then resumes
counting, so the next loss is a new gap.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from controller.kit.kafka_client import topic_partitions
from tests.scenarios.brokers.lost_broker import (
    PARTITIONS,
    RestartableBroker,
    lost_broker_world,
    readyz,
    rolloutctl,
    started,
    stored_offsets,
)
from tests.scenarios.harness import Scenario, manual_plan
from tests.support.backing.reading import read_to_end

# A fresh Apache Kafka node takes 10 to 20 s to start on a busy machine, three times here.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def restartable_broker(tmp_path: Path) -> Iterator[RestartableBroker]:
    """The session's kind of broker: a fresh Apache Kafka node on the same port at each
    loss, or tansu with memory storage."""
    yield from started(RestartableBroker(tmp_path / "kafka"))


FLAG = "checkout"
LOSSES = 3


async def test_every_loss_of_the_brokers_data_is_alerted_until_an_operator_chooses(
    restartable_broker: RestartableBroker,
    redis_url: str,
    redis_namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = restartable_broker
    async with lost_broker_world(
        broker.bootstrap,
        redis_url,
        redis_namespace,
        tmp_path,
        RC_INGEST__STALL_AFTER_SECONDS="600",
        RC_INGEST__HELD_ALERT_REPEAT_SECONDS="2",
    ) as (world, url):
        world.start_daemon()
        await world.start(FLAG, manual_plan())
        for loss in range(LOSSES):
            # Given events counted on every partition
            await _counted_everywhere(world)
            # When the broker comes back without its data
            broker.lose_data()
            # Then every partition's critical alert reaches the alerts topic, and again
            # while the partition stays held
            alerts = await world.until(
                lambda: _alerted_twice(world),
                timeout=90,
                what=f"two events_log_gap alerts per partition after loss {loss + 1}",
            )
            assert {a["severity"] for a in alerts} == {"critical"}
            assert {a["details"]["fits"] for a in alerts} == {"reread"}
            # and /readyz names the command that fits an empty broker (once its watch of the
            # brokers has had an answer from the new node: until then it names the brokers)
            await world.until(
                lambda: _names_reread(url), timeout=60, what="/readyz naming the reread"
            )
            # When the operator chooses it, the daemon is ready again
            argv = ("ingest", "reread")
            code = await asyncio.to_thread(rolloutctl, world, tmp_path / "keys", monkeypatch, *argv)
            assert code == 0, world.daemon.log_text()[-3000:]
            await world.until(lambda: _ready(url), timeout=60, what="ready after the reread")
        assert world.daemon.running, world.daemon.log_text()[-3000:]


async def _counted_everywhere(world: Scenario) -> None:
    """Apps send until every events partition has counted records, then stop."""
    world.run_apps(FLAG, rate=2000)

    async def counted() -> bool:
        offsets = await stored_offsets(world)
        assert all((offsets[p] or 0) >= 50 for p in range(PARTITIONS)), offsets
        return True

    await world.until(counted, timeout=90, what="records counted on every partition")
    await world.stop_apps()


async def _alerted_twice(world: Scenario) -> list[dict[str, Any]] | None:
    """The events_log_gap alerts on the alerts topic (made again: all since the loss), once
    every partition has two."""
    topic = world.topics["alerts"]
    count = await _partitions(world.bootstrap, topic)
    records = await read_to_end(world.bootstrap, topic, partitions=count) if count else []
    alerts = [orjson.loads(r.value) for r in records]
    gaps = [a for a in alerts if a["kind"] == "events_log_gap"]
    per_partition = Counter(a["details"]["partition"] for a in gaps)
    assert all(per_partition[p] >= 2 for p in range(PARTITIONS)), per_partition
    return gaps


async def _partitions(bootstrap: str, topic: str) -> int:
    """How many partitions ``topic`` has (whoever created it again: a client that wrote or
    read it first gets the broker's default), from a fresh metadata request: a consumer's
    cached metadata names no topic on Apache Kafka until it subscribes."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return len(await topic_partitions(consumer, topic) or ())
    finally:
        await consumer.stop()


async def _names_reread(url: str) -> bool:
    status, body = await readyz(url)
    assert status == 503, body
    assert "`rolloutctl ingest reread` fits p0, p1, p2, p3" in body["reason"], body
    return True


async def _ready(url: str) -> bool:
    status, body = await readyz(url)
    assert status == 200, body
    return True
