"""The names of an events topic's keys that more than one store uses (the layout is in
:mod:`.aggregates`): one partition's hash tag, the set of partitions ever claimed, and
where another source's partitions keep their offsets."""

from __future__ import annotations

SOURCES_PARTITION = -1
"""The partition, among the events topic's, that holds what other sources count.

A Kafka partition is never negative, so its keys never collide with those of the
events topic's partitions 0..n. Every partition of every other source (the
OpenTelemetry topics) adds to it: one slot, one set of unit HyperLogLogs and
one id window for them all, so a unit or an event id seen on two of their
partitions counts once."""


def partition_tag(prefix: str, topic: str, partition: int) -> str:
    """The hash tag of one partition's keys: all of them live in one cluster slot."""
    return f"{{{prefix}:{topic}:{partition}}}"


def partitions_key(prefix: str, topic: str) -> str:
    """The set of the topic's partitions ever claimed."""
    return f"{prefix}:partitions:{topic}"


def source_meta_key(prefix: str, topic: str, source: str, partition: int) -> str:
    """The meta hash (epoch, offset) of ``partition`` of the other source topic ``source``.

    It lives in the slot of :data:`SOURCES_PARTITION`, so one flush script checks
    that source partition's fence and writes the aggregates it adds to."""
    return f"{partition_tag(prefix, topic, SOURCES_PARTITION)}:src:{source}:{partition}:meta"
