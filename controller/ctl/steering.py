"""Send an operator command and wait for the controller's verdict on it.

The decisions topic is read from its current end *before* the command is
produced, so the decision cannot slip past: every command the controller
reads ends in a decision carrying its ``command_id``, ``applied`` or
``rejected`` with the reason. ``follow`` streams the decisions and alerts
topics for ``rolloutctl watch``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from controller.core.errors import BrokerError
from controller.settings import KafkaSettings

Sender = Callable[[], Awaitable[tuple[int, int]]]


async def send_and_await(
    command: dict[str, Any],
    *,
    send: Sender,
    kafka: KafkaSettings,
    decisions: str,
    timeout_s: float,
) -> dict[str, Any] | None:
    """Run ``send`` and return the decision on ``command``; None if none came in time."""
    async with _reader(kafka, [decisions], from_end=True, timeout_s=timeout_s) as consumer:
        await send()
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            for message in await _poll(consumer, min(left, 0.5)):
                if message.get("type") == "decision" and message.get("command_id") == command["id"]:
                    return message
    return None


async def follow(
    kafka: KafkaSettings,
    topics: list[str],
    *,
    from_beginning: bool,
    stop: asyncio.Event,
) -> AsyncGenerator[dict[str, Any]]:
    """Every message on ``topics`` from now (or the beginning) until ``stop`` is set."""
    async with _reader(kafka, topics, from_end=not from_beginning, timeout_s=30) as consumer:
        while not stop.is_set():
            for message in await _poll(consumer, 0.5):
                yield message


@asynccontextmanager
async def _reader(
    kafka: KafkaSettings, topics: list[str], *, from_end: bool, timeout_s: float
) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer without a group, on every partition of ``topics``, positioned."""
    consumer = AIOKafkaConsumer(
        **kafka.client_options() | {"client_id": "rolloutctl"},
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.start()
            await _position(consumer, topics, from_end=from_end)
    except BaseException as exc:
        await consumer.stop()
        if isinstance(exc, KafkaError | OSError | TimeoutError):
            where = kafka.bootstrap_servers
            raise BrokerError(f"cannot read {', '.join(topics)} at {where}: {exc!r}") from exc
        raise
    try:
        yield consumer
    finally:
        await consumer.stop()


async def _position(consumer: AIOKafkaConsumer, topics: list[str], *, from_end: bool) -> None:
    await consumer.topics()  # loads the cluster metadata
    partitions: list[TopicPartition] = []
    for topic in topics:
        found = consumer.partitions_for_topic(topic)
        if not found:
            raise BrokerError(f"topic {topic} does not exist: is the controller running?")
        partitions += [TopicPartition(topic, p) for p in sorted(found)]
    consumer.assign(partitions)
    # Resolved offsets, not seek_to_end(): that one is lazy and could land
    # after a decision produced in the meantime.
    ends = await consumer.end_offsets(partitions) if from_end else {}
    for partition in partitions:
        consumer.seek(partition, ends.get(partition, 0))


async def _poll(consumer: AIOKafkaConsumer, seconds: float) -> list[dict[str, Any]]:
    try:
        batch = await consumer.getmany(timeout_ms=max(1, int(seconds * 1000)))
    except KafkaError as exc:
        raise BrokerError(f"reading failed: {exc!r}") from exc
    out = []
    for records in batch.values():
        for record in records:
            try:
                message = orjson.loads(record.value or b"")
            except orjson.JSONDecodeError:
                continue  # not ours to judge: the topic's producers are the controller
            if isinstance(message, dict):
                out.append(message)
    return out
