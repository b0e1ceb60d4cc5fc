"""What ingest needs from outside: the events topic, the aggregate store, the dead-letter
queue and the record of held partitions, with the values that cross.

Re-exported by :mod:`controller.ports`, which services and adapters import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from controller.core.machine import Choice, LogGap, LogIdentity
from controller.core.stats import PartitionDelta

# -- values -------------------------------------------------------------------------


class Record(Protocol):
    """The parts of a consumed Kafka record the controller reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected record and why it was rejected (the DLQ's ``rc.reason`` and ``rc.detail``)."""

    record: Record
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Claim:
    """Ownership of an events partition: the fencing epoch and where to resume reading."""

    partition: int
    epoch: int
    offset: int | None
    log: LogIdentity | None = None  # the identity of the log `offset` was counted on, if stored
    rejoin: int | None = None  # an OTLP topic's: read again from here to `offset`, for joins


class FlushOutcome(Enum):
    APPLIED = "applied"
    REPLAYED = "replayed"


# -- ports ---------------------------------------------------------------------------


class EventSource(Protocol):
    """The events topic, partition by partition, at positions ingest chooses."""

    async def fetch(self, *, timeout_ms: int, max_records: int) -> dict[int, list[Record]]: ...
    async def seek(self, partition: int, offset: int | None) -> None: ...
    def pause(self, partitions: list[int]) -> None: ...
    def resume(self, partitions: list[int]) -> None: ...
    async def commit(self, offsets: dict[int, int]) -> None: ...
    def highwater(self, partition: int) -> int | None: ...
    def read_to(self, partition: int) -> int | None:
        """Where the last fetch left ``partition``: the offset after the last record it handed
        out and the offsets read past after it, which no consumer is handed (transaction
        markers, aborted transactions' records); None when unknown (a seek since)."""
        ...

    async def end_offsets(self, partitions: list[int]) -> dict[int, int]: ...
    async def log_range(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        """Each partition's earliest and log end offsets (empty if the broker cannot say)."""
        ...

    def partition_count(self) -> int | None:
        """How many partitions the topic has, as the last metadata said."""
        ...

    async def identity(self) -> LogIdentity | None:
        """The topic's identity asked of the broker now (None: unknown); or BrokerError."""
        ...


class HeldPartitions(Protocol):
    """Events partitions held for an operator's choice (:mod:`controller.core.machine.log_gaps`)."""

    async def record(self, gap: LogGap) -> None: ...
    async def choice(self, partition: int) -> tuple[Choice, int] | None: ...
    async def resume(
        self, partition: int, *, epoch: int, offset: int, log: LogIdentity | None = None
    ) -> bool: ...
    async def held(self) -> set[int]: ...
    async def stored(self, partition: int) -> int | None: ...
    async def retire(self, partition: int, *, log: LogIdentity | None) -> bool: ...
    async def recorded_partitions(self) -> int | None: ...
    async def record_partitions(self, count: int) -> None: ...
    async def record_starts(self, starts: Mapping[int, int]) -> None: ...
    async def first_start(self, partition: int) -> int | None: ...


class AggregateWriter(Protocol):
    """Claims partitions and applies batches to them, exactly once."""

    async def claim(self, partition: int) -> Claim: ...
    async def flush(
        self,
        delta: PartitionDelta,
        *,
        epoch: int,
        expected_offset: int | None,
        log: LogIdentity | None = None,
    ) -> FlushOutcome:
        """Apply ``delta``; with its offset store ``log``, the identity of its log."""
        ...


class DeadLetters(Protocol):
    """Where rejected input goes, acknowledged before its offset advances."""

    async def publish(self, letters: Sequence[DeadLetter]) -> None: ...
