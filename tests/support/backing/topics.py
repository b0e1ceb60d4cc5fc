"""Kafka topics made for one test on a broker it names, ready before they are used.

The session's ``topic_factory`` fixture makes topics on the session's broker; a test that runs
on each broker in turn (Apache Kafka, then the embedded one) or that sets a Collector up as an
operator would makes its own here: every partition has a leader in the metadata when the call
returns, and a topic the broker refused fails the call with its error.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.conftest import _wait_topic_ready


async def create_topics(bootstrap: str, partitions: Mapping[str, int]) -> None:
    """Create the topics (name: partitions), as an operator does before pointing a Collector
    at them, and wait until each is ready."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [NewTopic(name, n, replication_factor=1) for name, n in partitions.items()]
        answer = await admin.create_topics(topics)
        failed = [entry for entry in answer.topic_errors if entry[1] != 0]
        assert not failed, f"creating topics failed: {failed}"
        for name, n in partitions.items():
            await _wait_topic_ready(admin, name, n)
    finally:
        await admin.close()


async def fresh_topics(bootstrap: str, tag: str, partitions: Mapping[str, int]) -> dict[str, str]:
    """New topics for the keys of ``partitions``, named ``t-<tag>-<key>-<random>``, each with
    its count of partitions, made and ready on ``bootstrap``; their names by key."""
    names = {key: f"t-{tag}-{key}-{uuid.uuid4().hex[:8]}" for key in partitions}
    await create_topics(bootstrap, {names[key]: n for key, n in partitions.items()})
    return names
