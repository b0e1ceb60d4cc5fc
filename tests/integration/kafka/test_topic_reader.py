"""Reading a topic up to its end, bounded: what ``rolloutctl report`` reads decisions with."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaProducer

from controller.adapters.kafka import TopicReader
from controller.settings import KafkaSettings

pytestmark = pytest.mark.integration


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def test_reading_to_the_end_keeps_one_keys_records_and_says_it_got_there(
    kafka_bootstrap: str, topic_factory: Callable[..., Awaitable[str]]
) -> None:
    # Given a topic with two flags' records on three partitions
    topic = await topic_factory("decisions", partitions=3)
    records = [(b"a" if i % 3 else b"b", f"{i}".encode()) for i in range(30)]
    await produce(kafka_bootstrap, topic, records)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    # When it is read to its end for key "a"
    async with TopicReader(kafka, [topic], from_end=False, timeout_s=30) as reader:
        kept, complete = await reader.until_end(
            key=b"a", max_records=1_000, max_kept=1_000, timeout_s=30
        )
    # Then every record of "a" is there, in order, and the end was reached
    assert complete
    assert kept == [value for key, value in records if key == b"a"]


async def test_reading_to_the_end_keeps_several_keys_records(
    kafka_bootstrap: str, topic_factory: Callable[..., Awaitable[str]]
) -> None:
    # Given a flag's rollouts in three environments and another flag, on three partitions
    topic = await topic_factory("decisions", partitions=3)
    keys = [b"f", b"f@dev", b"f@staging", b"other"]
    records = [(keys[i % 4], f"{i}".encode()) for i in range(40)]
    await produce(kafka_bootstrap, topic, records)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    # When it is read to its end for the flag's keys in two environments
    wanted = [b"f", b"f@staging"]
    async with TopicReader(kafka, [topic], from_end=False, timeout_s=30) as reader:
        kept, complete = await reader.until_end(
            key=wanted, max_records=1_000, max_kept=1_000, timeout_s=30
        )
    # Then every record of those keys is there, and nothing else
    assert complete
    assert sorted(kept) == sorted(value for key, value in records if key in wanted)


async def test_a_read_past_its_bounds_stops_and_says_so(
    kafka_bootstrap: str, topic_factory: Callable[..., Awaitable[str]]
) -> None:
    topic = await topic_factory("decisions", partitions=1)
    await produce(kafka_bootstrap, topic, [(b"a", f"{i}".encode()) for i in range(50)])
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    async with TopicReader(kafka, [topic], from_end=False, timeout_s=30) as reader:
        kept, complete = await reader.until_end(key=None, max_records=10, max_kept=5, timeout_s=30)
    assert not complete
    assert 0 < len(kept) <= 5
    # ...and only the last of what it read is kept
    values = [int(v) for v in kept]
    assert values == sorted(values)
    assert values[-1] >= 9


async def test_an_empty_topic_is_read_to_its_end_at_once(
    kafka_bootstrap: str, topic_factory: Callable[..., Awaitable[str]]
) -> None:
    topic = await topic_factory("decisions", partitions=2)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    async with TopicReader(kafka, [topic], from_end=False, timeout_s=30) as reader:
        assert await reader.until_end(key=None, max_records=10, max_kept=5, timeout_s=30) == (
            [],
            True,
        )
