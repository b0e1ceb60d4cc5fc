"""Topic administration: create the controller's topics, list or delete topics, their log
ends, partitioning."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from aiokafka.partitioner import DefaultPartitioner

from controller.core.common import BrokerError
from controller.kit.deadlines import deadline
from controller.kit.kafka_client import topics_partitions, translated
from controller.settings import KafkaSettings, TopicSettings


@asynccontextmanager
async def _admin(kafka: KafkaSettings, **options: int) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed on the way out; broker failures translated."""
    admin = AIOKafkaAdminClient(**kafka.client_options(), **options)
    try:
        with translated(bootstrap=kafka.bootstrap_servers):
            await admin.start()
            yield admin
    finally:
        await admin.close()


def _partitions(name: str, kafka: KafkaSettings, topics: TopicSettings) -> int:
    """The events topic's setting; one for segments (a segment's parts then come in the
    order they were sent, before its record); three for the others."""
    if name == topics.events:
        return kafka.events_partitions
    return 1 if name == topics.segments else 3


async def ensure_topics(
    kafka: KafkaSettings, topics: TopicSettings, *, more: Mapping[str, int] | None = None
) -> list[str]:
    """Create the controller's topics that do not exist yet, and those of ``more`` (a name
    and its partitions: the OpenTelemetry topics it reads); return the created names."""
    async with _admin(kafka) as admin:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name,
                num_partitions=_partitions(name, kafka, topics),
                replication_factor=kafka.replication_factor,
                topic_configs=(
                    {"cleanup.policy": "compact"}
                    if name in (topics.flag_state, topics.segments)
                    else {}
                ),
            )
            for name in dict.fromkeys(topics.model_dump().values())
            if name not in existing
        ]
        wanted += [
            NewTopic(name, num_partitions=count, replication_factor=kafka.replication_factor)
            for name, count in (more or {}).items()
            if name not in existing and name not in topics.model_dump().values()
        ]
        if wanted:
            refused = _refused(await admin.create_topics(wanted))
            if refused:
                raise BrokerError(f"the broker would not create the topics: {'; '.join(refused)}")
        return [t.name for t in wanted]


def _refused(response: Any) -> list[str]:
    """The topics a CreateTopics answer did not make, grouped by the broker's reason (the
    answer carries them; aiokafka raises none)."""
    by_reason: dict[str, list[str]] = {}
    for topic, code, *more in response.topic_errors:
        # A topic made meanwhile by someone else (a second daemon, a broker that makes the
        # topics clients ask for) is no refusal.
        if code not in (0, TopicAlreadyExistsError.errno):
            reason = more[0] if more and more[0] else for_code(code).description
            by_reason.setdefault(f"{for_code(code).__name__} ({reason})", []).append(topic)
    return [f"{', '.join(topics)}: {reason}" for reason, topics in by_reason.items()]


async def topic_names(kafka: KafkaSettings, *, timeout_s: float) -> set[str]:
    """The topics the broker has: one metadata request, answered within ``timeout_s``."""
    async with asyncio.timeout(timeout_s * 2):
        async with _admin(kafka, request_timeout_ms=int(timeout_s * 1000)) as admin:
            return set(await admin.list_topics())


async def log_ends(kafka: KafkaSettings, names: list[str]) -> dict[tuple[str, int], int]:
    """The log end offset of every partition of the topics ``names`` that exist, by
    (topic, partition); a topic that does not exist is left out (never created by asking)."""
    consumer = AIOKafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
    try:
        with translated(bootstrap=kafka.bootstrap_servers):
            await consumer.start()
            existing = await topics_partitions(consumer, names)  # asks; creates none
            wanted = [
                TopicPartition(name, p) for name in names for p in sorted(existing.get(name, ()))
            ]
            ends = await consumer.end_offsets(wanted) if wanted else {}
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): int(end) for tp, end in ends.items()}


class LogEndReader:
    """The log end offsets of topics, asked of the broker (ListOffsets) within a deadline."""

    def __init__(self, kafka: KafkaSettings, *, timeout_s: float) -> None:
        self._kafka, self._timeout_s = kafka, timeout_s

    async def log_ends(self, topics: Sequence[str]) -> dict[str, dict[int, int]]:
        """Per topic of ``topics`` that exists, each partition's log end offset; raises a
        :class:`~controller.core.common.ControllerError` when the broker cannot say in time."""
        async with deadline(self._timeout_s, "the broker's log end offsets"):
            ends = await log_ends(self._kafka, list(topics))
        out: dict[str, dict[int, int]] = {}
        for (topic, partition), end in ends.items():
            out.setdefault(topic, {})[partition] = end
        return out


async def delete_topics(kafka: KafkaSettings, names: list[str]) -> None:
    """Delete the topics ``names``."""
    async with _admin(kafka) as admin:
        await admin.delete_topics(names)


def partition_for(key: str, partitions: int) -> int:
    """The partition a producer's default partitioner sends ``key`` to (murmur2)."""
    return int(DefaultPartitioner()(key.encode(), list(range(partitions)), []))
