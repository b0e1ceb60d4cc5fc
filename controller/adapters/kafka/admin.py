"""Topic administration: create the controller's topics, list or delete topics, partitioning."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from controller.kafka_client import translated
from controller.settings import KafkaSettings, TopicSettings


@asynccontextmanager
async def _admin(kafka: KafkaSettings, **options: int) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed on the way out; broker failures translated."""
    admin = AIOKafkaAdminClient(**kafka.client_options(), **options)
    try:
        with translated():
            await admin.start()
            yield admin
    finally:
        await admin.close()


async def ensure_topics(kafka: KafkaSettings, topics: TopicSettings) -> list[str]:
    """Create the controller's topics that do not exist yet; return the created names."""
    async with _admin(kafka) as admin:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name,
                num_partitions=kafka.events_partitions if name == topics.events else 3,
                replication_factor=kafka.replication_factor,
                topic_configs={"cleanup.policy": "compact"} if name == topics.flag_state else {},
            )
            for name in dict.fromkeys(topics.model_dump().values())
            if name not in existing
        ]
        if wanted:
            await admin.create_topics(wanted)
        return [t.name for t in wanted]


async def topic_names(kafka: KafkaSettings, *, timeout_s: float) -> set[str]:
    """The topics the broker has: one metadata request, answered within ``timeout_s``."""
    async with asyncio.timeout(timeout_s * 2):
        async with _admin(kafka, request_timeout_ms=int(timeout_s * 1000)) as admin:
            return set(await admin.list_topics())


async def delete_topics(kafka: KafkaSettings, names: list[str]) -> None:
    """Delete the topics ``names``."""
    async with _admin(kafka) as admin:
        await admin.delete_topics(names)


def partition_for(key: str, partitions: int) -> int:
    """The partition a producer's default partitioner sends ``key`` to (murmur2)."""
    return int(DefaultPartitioner()(key.encode(), list(range(partitions)), []))
