"""A topic's identity as the broker states it: its id (KIP-516) and partition count.

aiokafka asks for metadata at version 5 at most, which carries no topic ids; a
metadata request at version 10, the first that answers with them (Kafka 2.8 and
later), is built here from aiokafka's own protocol types and sent on the client's
connection. A broker that does not speak version 10, or answers with the zero id
(a broker without topic ids), gives the partition count alone. The request never
creates the topic it asks about.
"""

from __future__ import annotations

import asyncio
import uuid
from io import BytesIO
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import IncompatibleBrokerVersion, KafkaConnectionError
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    AbstractType,
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from controller.core.machine import LogIdentity
from controller.kit.kafka_client import BROKER_FAILURES, translate
from controller.settings import KafkaSettings

_NO_ID = uuid.UUID(int=0)


class _Uuid(AbstractType[uuid.UUID]):  # type: ignore[misc]
    """Kafka's ``uuid`` type: 16 bytes."""

    @classmethod
    def encode(cls, value: uuid.UUID) -> bytes:
        return value.bytes

    @classmethod
    def decode(cls, data: BytesIO) -> uuid.UUID:
        raw = data.read(16)
        if len(raw) != 16:
            raise ValueError("Buffer underrun decoding uuid")
        return uuid.UUID(bytes=raw)


_Int32s = CompactArray(Int32)


class MetadataResponseV10(Response):  # type: ignore[misc]
    API_KEY = 3
    API_VERSION = 10
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            CompactArray(
                ("node_id", Int32),
                ("host", CompactString("utf-8")),
                ("port", Int32),
                ("rack", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            CompactArray(
                ("error_code", Int16),
                ("name", CompactString("utf-8")),
                ("topic_id", _Uuid),
                ("is_internal", Boolean),
                (
                    "partitions",
                    CompactArray(
                        ("error_code", Int16),
                        ("partition_index", Int32),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("replica_nodes", _Int32s),
                        ("isr_nodes", _Int32s),
                        ("offline_replicas", _Int32s),
                        ("tags", TaggedFields),
                    ),
                ),
                ("topic_authorized_operations", Int32),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_authorized_operations", Int32),
        ("tags", TaggedFields),
    )


class MetadataRequestV10(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 10
    RESPONSE_TYPE = MetadataResponseV10
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_id", _Uuid),
                ("name", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class TopicIdRequest(Request[MetadataRequestV10]):  # type: ignore[misc]
    """Metadata of one topic at version 10; aiokafka raises ``NotImplementedError`` for a
    broker that does not speak it."""

    API_KEY = 3

    def __init__(self, topic: str) -> None:
        self._topic = topic

    def build(self, request_struct_class: type[MetadataRequestV10]) -> MetadataRequestV10:
        return request_struct_class([(_NO_ID, self._topic, {})], False, False, False, {})


def identity_in(response: Any, topic: str) -> LogIdentity | None:
    """The identity of ``topic`` in a version-10 answer; None if the answer lacks it."""
    for error_code, name, topic_id, _internal, partitions, *_ in response.topics:
        if name != topic or error_code != 0 or not partitions:
            continue
        known = None if topic_id == _NO_ID else str(topic_id)
        return LogIdentity(topic_id=known, partitions=len(partitions))
    return None


class TopicIdentity:
    """Asks a broker for one topic's identity, on connections of its own (opened at the
    first question, closed by :meth:`close`)."""

    def __init__(self, topic: str, kafka: KafkaSettings, *, timeout_s: float) -> None:
        self._topic, self._timeout_s = topic, timeout_s
        self._bootstrap = kafka.bootstrap_servers
        self._client = AIOKafkaClient(**kafka.client_options())
        self._started = False

    async def ask(self, topic: str | None = None) -> LogIdentity | None:
        """The topic's (or ``topic``'s) id and partition count; the count alone from a
        broker without topic ids; None for a topic the broker does not know. Raises
        :class:`BrokerError` when no broker answers in time."""
        topic = self._topic if topic is None else topic
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._asked(topic)
        except BROKER_FAILURES as exc:
            raise translate(exc, "the topic's identity", bootstrap=self._bootstrap) from exc

    async def _asked(self, topic: str) -> LogIdentity | None:
        if not self._started:
            await self._client.bootstrap()
            self._started = True
        node = self._client.get_random_node()
        if node is None:
            raise KafkaConnectionError("no broker known yet")
        try:
            answer = await self._client.send(node, TopicIdRequest(topic))
        except (NotImplementedError, IncompatibleBrokerVersion):
            cluster = await self._client.fetch_all_metadata()
            partitions = cluster.partitions_for_topic(topic)
            return LogIdentity(None, len(partitions)) if partitions else None
        return identity_in(answer, topic)

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self._client.close()


async def topic_ids(kafka: KafkaSettings, names: list[str], *, timeout_s: float) -> dict[str, str]:
    """The id of each topic of ``names`` that the broker knows and gives an id (KIP-516),
    asked on a connection opened and closed here: none from a broker without topic ids.
    Raises :class:`BrokerError` when no broker answers within ``timeout_s`` a question."""
    if not names:
        return {}
    asker = TopicIdentity(names[0], kafka, timeout_s=timeout_s)
    try:
        known = {name: await asker.ask(name) for name in names}
    finally:
        await asker.close()
    return {name: i.topic_id for name, i in known.items() if i is not None and i.topic_id}
