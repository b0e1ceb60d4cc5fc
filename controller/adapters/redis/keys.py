"""The names of an events topic's keys that more than one store uses (the layout is in
:mod:`.aggregates`): one partition's hash tag, and the set of partitions ever claimed."""

from __future__ import annotations


def partition_tag(prefix: str, topic: str, partition: int) -> str:
    """The hash tag of one partition's keys: all of them live in one cluster slot."""
    return f"{{{prefix}:{topic}:{partition}}}"


def partitions_key(prefix: str, topic: str) -> str:
    """The set of the topic's partitions ever claimed."""
    return f"{prefix}:partitions:{topic}"
