"""Reading back what a test sent: a topic up to its end offsets."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from controller.core.wire.messages import event_adapter
from tests.support.waiting import eventually


async def read_to_end(
    bootstrap: str, topic: str, partitions: int = 4, *, timeout: float = 30
) -> list[Any]:
    """Every record of ``topic`` up to the end offsets it had when reading began.

    Nothing before them is missed and nothing after them is waited for, so a
    duplicate cannot hide and a missing record fails fast. Fails the test after
    ``timeout`` seconds if the records cannot be read.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        records: list[Any] = []

        async def read_up() -> bool:
            if not [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                return True
            batch = await consumer.getmany(timeout_ms=200)
            records.extend(r for rs in batch.values() for r in rs)
            raise AssertionError(f"only {len(records)} records of {topic} read")

        await eventually(read_up, timeout=timeout, what=f"every record of {topic}")
        return records
    finally:
        await consumer.stop()


def events_of(records: Iterable[Any]) -> list[dict[str, Any]]:
    """The records' events, each checked against the event contract, as JSON-shaped dicts."""
    return [event_adapter.validate_json(r.value).model_dump(mode="json") for r in records]
