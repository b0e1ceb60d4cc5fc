"""The flag versions the flag-state and decisions topics have seen, read on Apache Kafka."""

from __future__ import annotations

import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from controller.adapters.kafka import TopicVersionFloors
from controller.adapters.kafka.version_floors import read_floors
from controller.core.common import ControllerError
from controller.settings import KafkaSettings

pytestmark = pytest.mark.integration


async def _topics(bootstrap: str, *partitions: int) -> list[str]:
    names = [f"t-floors-{uuid.uuid4().hex[:8]}" for _ in partitions]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        new = [NewTopic(n, p, replication_factor=1) for n, p in zip(names, partitions, strict=True)]
        await admin.create_topics(new)
    finally:
        await admin.close()
    return names


async def _produce(bootstrap: str, records: list[tuple[str, str, object]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send_and_wait(topic, orjson.dumps(value), key=key.encode())
    finally:
        await producer.stop()


def _state(flag: str, version: int) -> dict[str, object]:
    return {"type": "flag_state", "flag": flag, "version": version}


def _gate(flag: str, *versions: int) -> dict[str, object]:
    return {"type": "decision", "flag": flag, "evidence": {"gate": {"flag_versions": [*versions]}}}


async def test_floors_are_read_from_both_topics_to_their_end(apache_kafka_bootstrap: str) -> None:
    bootstrap = apache_kafka_bootstrap
    states, decisions = await _topics(bootstrap, 1, 2)
    # Given a flag whose states went to version 3 (then a store loss published 1 again),
    # and whose gates counted versions up to 5
    await _produce(
        bootstrap,
        [
            (states, "a", _state("a", 3)),
            (states, "a", _state("a", 1)),
            (states, "b", _state("b", 2)),
            (decisions, "a", _gate("a", 4, 5)),
            (decisions, "c", {"type": "decision", "flag": "c", "evidence": {}}),
        ],
    )
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    floors = TopicVersionFloors(kafka, flag_state_topic=states, decisions_topic=decisions)
    # Then each flag's floor is the highest version either topic names
    assert [await floors.floor(f) for f in ("a", "b", "c", "new")] == [5, 2, 0, 0]
    # ...read once: what is published later is not read until the floors are forgotten,
    # and what the daemon saved meanwhile is told to them
    await _produce(bootstrap, [(states, "b", _state("b", 9))])
    floors.saw("a", 6)
    assert (await floors.floor("a"), await floors.floor("b")) == (6, 2)
    floors.forget()
    assert (await floors.floor("a"), await floors.floor("b")) == (5, 9)


async def test_a_read_that_cannot_reach_the_end_is_retried_not_guessed(
    apache_kafka_bootstrap: str,
) -> None:
    bootstrap = apache_kafka_bootstrap
    states, decisions = await _topics(bootstrap, 1, 1)
    await _produce(bootstrap, [(states, "a", _state("a", n)) for n in range(1, 4)])
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    with pytest.raises(ControllerError, match="could not be read to their end") as raised:
        await read_floors(kafka, [states, decisions], timeout_s=30, max_records=2)
    assert raised.value.retriable
