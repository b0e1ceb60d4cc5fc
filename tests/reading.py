"""Reading back what a test sent: a topic up to its end offsets, a condition until it holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from controller.core.messages import event_adapter


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
        deadline = time.monotonic() + timeout
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            assert time.monotonic() < deadline, f"only {len(records)} records of {topic} read"
            batch = await consumer.getmany(timeout_ms=200)
            records += [r for rs in batch.values() for r in rs]
        return records
    finally:
        await consumer.stop()


def events_of(records: Iterable[Any]) -> list[dict[str, Any]]:
    """The records' events, each checked against the event contract, as JSON-shaped dicts."""
    return [event_adapter.validate_json(r.value).model_dump(mode="json") for r in records]


async def until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Wait until ``check()`` holds; fail the test after ``timeout`` seconds, naming ``what``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
