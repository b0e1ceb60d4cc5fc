"""Reaching the brokers and Redis at start, and starting the daemon's Kafka clients.

Start-up waits until Redis answers a ping and the brokers a metadata request,
retrying by the retry policy (``/readyz`` meanwhile names what it waits for),
then creates the missing topics and starts the producer and both consumers.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

import structlog

from controller.adapters.kafka import (
    ControlConsumer,
    DeadLetterPublisher,
    EventConsumer,
    Producer,
    Publisher,
    ensure_topics,
    topic_names,
)
from controller.adapters.redis import RedisAggregateStore
from controller.core.common import BrokerUnavailable
from controller.daemon.ingest import Ingest
from controller.daemon.rollouts import Ownership
from controller.daemon.running.closing import Closing
from controller.daemon.serving import kafka_of
from controller.process import Retry
from controller.settings import Settings

log = structlog.get_logger("controller.daemon.running.connecting")

KAFKA_PROBE_SECONDS = 5.0
"""One start-up metadata request to the brokers waits at most this long before a retry."""


@dataclass(frozen=True, slots=True)
class KafkaClients:
    """The daemon's Kafka clients: one producer's two publishers, and both consumers."""

    dead_letters: DeadLetterPublisher
    outputs: Publisher
    control: ControlConsumer
    events: EventConsumer


async def connect_kafka(
    stack: AsyncExitStack,
    closing: Closing,
    settings: Settings,
    ingest: Ingest,
    ownership: Ownership,
) -> KafkaClients:
    """Create missing topics, then start the producer and both consumers."""
    if settings.kafka.create_topics:
        created = await ensure_topics(settings.kafka, settings.topics)
        if created:
            log.info("topics_created", topics=created)
    producer = await closing.enter(stack, "producer", Producer(kafka=settings.kafka))
    topics = settings.topics
    control = ControlConsumer(
        kafka=settings.kafka,
        commands=topics.commands,
        monitors=topics.monitors,
        on_assignment=ownership.assigned,
    )
    events = EventConsumer(
        kafka=settings.kafka,
        topic=topics.events,
        listener=ingest,
        start_from=settings.ingest.start_from,
        fetch_min_bytes=settings.ingest.fetch_min_bytes,
        fetch_max_wait_ms=settings.ingest.fetch_max_wait_ms,
    )
    return KafkaClients(
        dead_letters=DeadLetterPublisher(producer=producer, topic=topics.dlq),
        outputs=Publisher(producer=producer),
        control=await closing.enter(stack, "control consumer", control),
        events=await closing.enter(stack, "events consumer", events),
    )


async def wait_for_redis(store: RedisAggregateStore, retry: Retry) -> None:
    """Return once Redis answers (or stopping was asked); a permanent error is raised."""
    await retry(store.ping, "waiting for redis")


async def wait_for_kafka(settings: Settings, retry: Retry) -> None:
    """Return once the brokers answer a metadata request (or stopping was asked).

    Until then ``/readyz`` says start-up waits for Kafka, as it does for Redis,
    instead of the daemon exiting at its first refused connection.
    """

    async def metadata() -> None:
        try:
            await topic_names(settings.kafka, timeout_s=KAFKA_PROBE_SECONDS)
        except TimeoutError as exc:
            detail = f"no metadata within {KAFKA_PROBE_SECONDS:g} s"
            raise BrokerUnavailable(kafka_of(settings).down(detail)) from exc

    await retry(metadata, "waiting for kafka")
