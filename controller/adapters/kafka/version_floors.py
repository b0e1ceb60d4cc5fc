"""The flag versions the flag-state and decisions topics have seen, read for the daemon.

:func:`read_from_beginning` reads topics from their beginning to their end now, for
this and for rebuilding the flags a lost store took.

:class:`TopicVersionFloors` reads both topics from their beginning to their
end as of the read (no group, no offsets left on the broker) into a
:class:`~controller.core.serving.VersionFloors`, once, and answers every
flag's floor from it until :meth:`~TopicVersionFloors.forget` (the store was
lost again: what it published since the read may be above the floor read).
Versions the daemon publishes meanwhile are told to it (:meth:`saw`), so a
floor read once stays the highest.

A read that cannot finish (the broker away, a topic missing, more than
``max_records``) raises :class:`~controller.core.common.BrokerError`
(retriable): a start on a flag the store does not know is not decided on a
floor guessed low; the command is tried again as any command whose store or
broker failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from controller.adapters.kafka.readers import TopicReader
from controller.core.common import BrokerUnavailable
from controller.core.serving import VersionFloors
from controller.settings import KafkaSettings

READ_TIMEOUT_S = 60.0
"""The longest one read of both topics may take."""
MAX_RECORDS = 5_000_000
"""Records read at most (the decisions topic's retention bounds it)."""
CHUNK = 10_000
"""Records read in one go (one fetch takes as many at most), so memory holds two chunks."""


class TopicVersionFloors:
    """Each flag's floor, read from the flag-state and decisions topics once."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        flag_state_topic: str,
        decisions_topic: str,
        timeout_s: float = READ_TIMEOUT_S,
        max_records: int = MAX_RECORDS,
    ) -> None:
        self._kafka, self._timeout_s, self._max_records = kafka, timeout_s, max_records
        self._topics = [flag_state_topic, decisions_topic]
        self._read: VersionFloors | None = None
        self._lock = asyncio.Lock()

    async def floor(self, flag: str) -> int:
        """The highest version the topics have seen for ``flag``; 0: none."""
        return (await self.floors()).floor(flag)

    async def floors(self) -> VersionFloors:
        """Every flag's floor, read once (again after :meth:`forget`)."""
        async with self._lock:
            if self._read is None:
                self._read = await read_floors(
                    self._kafka,
                    self._topics,
                    timeout_s=self._timeout_s,
                    max_records=self._max_records,
                )
            return self._read

    def saw(self, flag: str, version: int) -> None:
        """``flag`` was published at ``version`` since the read."""
        if self._read is not None:
            self._read.saw(flag, version)

    def forget(self) -> None:
        """Read the topics again for the next floor asked for."""
        self._read = None


async def read_floors(
    kafka: KafkaSettings, topics: list[str], *, timeout_s: float, max_records: int
) -> VersionFloors:
    """The versions ``topics`` (flag-state and decisions) name, per flag, to their end now."""
    floors = VersionFloors()
    await read_from_beginning(
        kafka, topics, floors.take, timeout_s=timeout_s, max_records=max_records
    )
    return floors


async def read_from_beginning(
    kafka: KafkaSettings,
    topics: list[str],
    take: Callable[[bytes | None], None],
    *,
    timeout_s: float,
    max_records: int,
) -> None:
    """Hand ``take`` each value of ``topics``, from their beginning to their end now, in
    order per partition; a chunk at a time, so what is kept in memory is one chunk's
    records. Raises :class:`BrokerUnavailable` when the end is not reached in time."""
    read = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    reader = TopicReader(
        kafka, topics, from_end=False, client_id="rollout-topic-history", timeout_s=timeout_s
    )
    async with reader:
        while read < max_records and (left := deadline - loop.time()) > 0:
            chunk = min(CHUNK, max_records - read)
            values, whole = await reader.until_end(
                # One fetch may pass the chunk by up to its own size: every record is kept.
                key=None,
                max_records=chunk,
                max_kept=chunk + CHUNK,
                timeout_s=left,
            )
            read += len(values)
            for value in values:
                take(value)
            if whole:
                return
    raise BrokerUnavailable(
        f"{', '.join(topics)} could not be read to their end within"
        f" {timeout_s:g} s and {max_records:,} records"
    )
