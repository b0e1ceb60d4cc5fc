"""The Kafka edge: every use of aiokafka in the daemon and the operator's tools.

Modules by role: :mod:`~.consumers` (the
daemon's event and control consumers), :mod:`~.producer` (producing and the
dead-letter publisher), :mod:`~.readers` (topic readers for ``rolloutctl`` and
the demo), :mod:`~.spans` (a span of time read back, for the audit export),
:mod:`~.version_floors` (the flag versions the topics have seen) and
:mod:`~.admin` (topics and partitioning). aiokafka's errors are
translated, and each client started and stopped, by :mod:`controller.kit.kafka_client`,
which the app SDK's transport shares. Nothing else outside the adapters
imports aiokafka.
"""

from controller.adapters.kafka.admin import (
    LogEndReader,
    delete_topics,
    ensure_topics,
    log_ends,
    partition_for,
    topic_names,
)
from controller.adapters.kafka.consumers import ControlConsumer, EventConsumer, PartitionListener
from controller.adapters.kafka.producer import (
    DeadLetterPublisher,
    OutRecord,
    Producer,
    Publisher,
    send_and_wait,
    send_many,
)
from controller.adapters.kafka.readers import GroupConsumer, TopicReader
from controller.adapters.kafka.spans import SpanReader
from controller.adapters.kafka.topic_ids import topic_ids
from controller.adapters.kafka.version_floors import TopicVersionFloors, read_from_beginning
from controller.ports import DeadLetter, Record

__all__ = [
    "ControlConsumer",
    "DeadLetter",
    "DeadLetterPublisher",
    "EventConsumer",
    "GroupConsumer",
    "LogEndReader",
    "OutRecord",
    "PartitionListener",
    "Producer",
    "Publisher",
    "Record",
    "SpanReader",
    "TopicReader",
    "TopicVersionFloors",
    "delete_topics",
    "ensure_topics",
    "log_ends",
    "partition_for",
    "read_from_beginning",
    "send_and_wait",
    "send_many",
    "topic_ids",
    "topic_names",
]
