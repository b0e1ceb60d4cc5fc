"""The daemon's own records are written by idempotent producers on Apache Kafka.

Kafka stamps each record batch with the producer id it was granted; a plain producer's
batches carry ``producerId: -1``. The test reads the daemon's decisions, flag-state and
dead-letter topics back from the node's log segments with Kafka's own
``DumpLogSegments``, so what it checks is what the broker stored, not what a client says.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from controller.dev.kafka_broker import KafkaBroker
from tests.conftest import KafkaBrokerFactory
from tests.scenarios.brokers.lost_broker import lost_broker_world
from tests.scenarios.harness import manual_plan
from tests.support.backing.reading import read_to_end

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG = "checkout"
PARTITIONS = 3
"""Of each output topic, as the daemon creates them."""
PRODUCER_ID = re.compile(r"\bproducerId: (-?\d+)")
REFUSALS = ("InitProducerId", "ClusterAuthorization", "idempotent_producer_unsupported")


def producer_ids(broker: KafkaBroker, topic: str) -> list[int]:
    """The producer id of every record batch of ``topic``, as stored."""
    dumped = "".join(broker.dump_log_segments(topic, p) for p in range(PARTITIONS))
    return [int(found) for found in PRODUCER_ID.findall(dumped)]


async def test_the_daemons_records_are_written_by_idempotent_producers(
    kafka_broker_factory: KafkaBrokerFactory, redis_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    # Given the daemon on an Apache Kafka node
    broker = kafka_broker_factory()
    async with lost_broker_world(broker.bootstrap, redis_url, redis_namespace, tmp_path) as (
        world,
        _,
    ):
        world.start_daemon()
        # When it publishes a decision and a flag state, and sets aside a record it cannot read
        command = await world.start(FLAG, manual_plan())
        await world.until(
            lambda: world.observed.decision_where(command_id=command["id"]),
            timeout=60,
            what="the start's decision",
        )
        await world.until(lambda: world.state(FLAG), timeout=60, what="the flag's state")
        await _produce(broker.bootstrap, world.topics["events"], b"not an event")
        dlq = world.topics["dlq"]
        await world.until(lambda: _has_records(broker, dlq), timeout=60, what="a dead letter")
        log = world.daemon.log_text()
    # Then every batch Kafka stored for it carries a producer id the broker granted
    for name in ("decisions", "flag_state", "dlq"):
        ids = producer_ids(broker, world.topics[name])
        assert ids, f"no record batch in {name}"
        assert min(ids) >= 0, f"{name} was written without idempotence: producer ids {ids}"
    # and the daemon asked for it without a refusal or an error
    assert not [word for word in REFUSALS if word in log], log[-3000:]


async def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    async with AIOKafkaProducer(bootstrap_servers=bootstrap) as producer:
        await producer.send_and_wait(topic, value, key=b"unit-1", partition=0)


async def _has_records(broker: KafkaBroker, topic: str) -> bool:
    records = await read_to_end(broker.bootstrap, topic, PARTITIONS, timeout=10)
    assert records, f"nothing in {topic} yet"
    return True
