"""The ports: what the daemon's services need from outside, with the values that cross.

The services in :mod:`controller.daemon` depend on these Protocols only. The adapters in
:mod:`controller.adapters` implement them against Kafka and Redis (proved by the integration
tests), and :mod:`controller.adapters.memory` in memory for unit tests and benchmarks. A
port owns its value types, so neither side imports the other to exchange them. What
ingest needs is in :mod:`.ingest`, re-exported here: everyone imports from this face.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, IntEnum
from typing import Any, Protocol

import orjson

from controller.core.common import StoreError
from controller.core.metrics_source import Answer
from controller.core.release import PipelineState
from controller.core.rollouts import AdvisorResult, Briefing, Rollout
from controller.core.serving import Applied, Serving, Target
from controller.core.stats import FlagAggregates
from controller.ports.ingest import (
    AggregateWriter,
    Claim,
    DeadLetter,
    DeadLetters,
    EventSource,
    FlushOutcome,
    HeldPartitions,
    Record,
)

__all__ = [
    "Advisor",
    "AggregateReader",
    "AggregateWriter",
    "AppliedRecords",
    "Claim",
    "Claims",
    "CommandSeen",
    "ControlSource",
    "DeadLetter",
    "DeadLetters",
    "EventSource",
    "FlagBackend",
    "FlushOutcome",
    "GateHistory",
    "HeldPartitions",
    "Loaded",
    "MetricSource",
    "OutboxMessage",
    "Outputs",
    "PipelineRuns",
    "Record",
    "RolloutStates",
    "RunLoaded",
    "SaveOutcome",
    "Segments",
    "StateWrite",
    "StoredSegment",
    "ValueOutputs",
]

# -- values -------------------------------------------------------------------------


class SaveOutcome(IntEnum):
    SAVED = 1
    CONFLICT = 0
    ALREADY_APPLIED = -1


class CommandSeen(Enum):
    """Whether a command read from a record was applied before, and from which record."""

    NEW = "new"
    REDELIVERED = "redelivered"
    """Applied from this very record: the topic handed it over again (a new owner after a
    rebalance, a paused instance resuming), so it is no news and no refusal either."""
    REPLAYED = "replayed"
    """Applied from another record: the same signed command sent again."""

    @classmethod
    def of(cls, *, applied: bool, from_this_record: bool) -> CommandSeen:
        """The one rule for every kind of command: only an applied command read from
        another record than the one it was applied from is a replay."""
        if not applied:
            return cls.NEW
        return cls.REDELIVERED if from_this_record else cls.REPLAYED


@dataclass(frozen=True, slots=True)
class Loaded:
    """A rollout as stored, with the revision to compare against when saving."""

    rev: int
    rollout: Rollout | None


@dataclass(frozen=True, slots=True)
class RunLoaded:
    """A release pipeline's run as stored, with the revision to compare against."""

    rev: int
    run: PipelineState | None


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message to publish: which output topic, its key and its JSON value."""

    topic: str
    key: str
    value: bytes
    id: str = field(default="", compare=False)
    """The outbox entry's id, given when it is saved: publishing is confirmed by it."""

    def encode(self) -> bytes:
        """The outbox entry, with a fresh id unless the message already has one."""
        entry_id = self.id or uuid.uuid4().hex
        value = self.value.decode()
        return orjson.dumps({"id": entry_id, "topic": self.topic, "key": self.key, "value": value})

    @classmethod
    def decode(cls, raw: bytes | str) -> OutboxMessage:
        """The message in an outbox entry; an unreadable entry comes back with no topic."""
        try:
            data = orjson.loads(raw)
            entry_id = str(data.get("id", ""))
            return cls(str(data["topic"]), str(data["key"]), str(data["value"]).encode(), entry_id)
        except (orjson.JSONDecodeError, KeyError, TypeError, UnicodeError, AttributeError):
            return cls("", "", raw.encode() if isinstance(raw, str) else raw)

    @property
    def readable(self) -> bool:
        return bool(self.topic)


@dataclass(frozen=True, slots=True)
class StateWrite:
    """One compare-and-set of a flag's rollout state, with the messages it implies.

    ``rev`` is the revision the write expects (``-1``: any, to queue messages only);
    ``rollout=None`` keeps the stored state. With ``command_id``, the command is recorded as
    applied (ids older than ``keep_ms`` before ``now_ms`` are forgotten), unless it already
    was: then nothing is written. ``delivery`` names the record it was read from (topic,
    partition, offset), kept with the id so that record read again is told from a replay.
    """

    rev: int
    rollout: Rollout | None
    outbox: list[OutboxMessage] = field(default_factory=list)
    command_id: str | None = None
    now_ms: int = 0
    keep_ms: int = 0
    delivery: str = ""


# -- what the engine needs --------------------------------------------------------------


class RolloutStates(Protocol):
    """Each flag's rollout state, saved by compare-and-set together with its outbox."""

    async def load(self, flag: str) -> Loaded: ...
    async def load_many(self, flags: Sequence[str]) -> list[Loaded | StoreError]: ...
    async def load_all(self) -> dict[str, Loaded | StoreError]:
        """Every flag that has (or had) a rollout, in order, each with its state or the
        error that makes it unreadable, in a number of round trips that does not grow
        with the flags."""
        ...

    async def save(self, flag: str, write: StateWrite) -> SaveOutcome: ...
    async def seen(self, flag: str, command_id: str, delivery: str = "") -> CommandSeen: ...
    async def pending(self, flag: str) -> list[OutboxMessage]: ...
    async def published(self, flag: str, ids: Sequence[str]) -> int: ...
    async def replicated(self, flag: str) -> None: ...
    async def hold_drain(self, flag: str, token: str, *, ttl_ms: int) -> bool: ...
    async def end_drain(self, flag: str, token: str) -> None: ...
    async def quarantine(self, flag: str, reason: str) -> OutboxMessage | None: ...
    async def flags(self) -> set[str]: ...


class PipelineRuns(Protocol):
    """Release pipeline runs, each saved by compare-and-set together with its outbox."""

    async def index(self, flag: str, run_id: str, at_ms: int) -> None: ...
    async def load(self, run_id: str) -> RunLoaded: ...
    async def save(
        self, run_id: str, rev: int, state: PipelineState, outbox: Sequence[OutboxMessage]
    ) -> bool: ...
    async def finished(self, run_id: str) -> None: ...
    async def runs_of(self, flag: str) -> list[str]: ...
    async def with_runs(self, flags: Collection[str]) -> set[str]: ...
    async def running(self) -> set[str]: ...
    async def pending(self, run_id: str) -> list[OutboxMessage]: ...
    async def published(self, run_id: str, ids: Sequence[str]) -> int: ...


class AggregateReader(Protocol):
    """The gates' view of the aggregates, and which flags have news."""

    async def read(self, flag: str, versions: Iterable[int]) -> FlagAggregates: ...
    async def read_many(
        self, wanted: Sequence[tuple[str, Iterable[int]]]
    ) -> list[FlagAggregates]: ...
    async def pop_dirty(self, limit: int = 10_000) -> set[str]: ...
    async def mark_dirty(self, flags: set[str]) -> None: ...


class Outputs(Protocol):
    """Publishes ``(topic, key, value)`` messages in order and waits for the broker."""

    async def publish(self, messages: list[tuple[str, str, bytes]]) -> None: ...


class ControlSource(Protocol):
    """The commands and monitors topics, and which flags this instance owns."""

    async def fetch(self, *, timeout_ms: int) -> list[Record]: ...
    async def commit(self) -> None: ...
    def owns(self, flag: str) -> bool: ...


class MetricSource(Protocol):
    """A metrics server guardrails read (Prometheus): one instant query, bounded.

    ``query`` raises a retriable :class:`~controller.core.common.errors.ControllerError`
    whose message says why when no usable answer came (down, slow, too large, not its
    format); ``where`` names the server and its setting for alerts.
    """

    where: str

    async def query(self, promql: str, *, at: datetime) -> Answer: ...


class Advisor(Protocol):
    """The model asked at stage gates; it never raises."""

    async def advise(self, briefing: Briefing) -> AdvisorResult: ...


# -- what the monitor intake needs ------------------------------------------------------


class Claims(Protocol):
    """Ids remembered for a while, so a redelivered webhook changes nothing."""

    async def claim(self, claim_id: str, *, ttl_s: int) -> bool: ...
    async def release(self, claim_id: str) -> None: ...


# -- what the gate history needs --------------------------------------------------------


class GateHistory(Protocol):
    """Bounded, expiring history per flag: gate points per stage, decisions and alerts.

    Points are encoded by :mod:`controller.core.reading.history`; messages are the
    published decision and alert JSON. Every list is capped and expires, so
    the store never grows without bound.
    """

    async def append_point(self, flag: str, rollout_id: str, stage: int, point: bytes) -> None: ...
    async def points(self, flag: str, rollout_id: str, stages: int) -> list[list[bytes]]: ...
    async def latest(self, stages: Sequence[tuple[str, str, int]]) -> list[bytes | None]: ...
    async def append_message(self, flag: str | None, message: bytes, *, alert: bool) -> None: ...
    async def messages(self, flag: str) -> list[bytes]: ...
    async def recent_alerts(self, limit: int) -> list[bytes]: ...


# -- what the flag-backend sync needs ---------------------------------------------------


class FlagBackend(Protocol):
    """A flag platform serving rollouts (Unleash): read back what it serves, make it serve.

    Each raises a retriable :class:`~controller.core.common.errors.ControllerError`
    while the platform cannot be reached; ``write`` is idempotent.
    """

    async def read(self, target: Target) -> Serving: ...
    async def write(self, target: Target, want: Serving, actual: Serving, *, flag: str) -> None: ...
    async def environments(self) -> frozenset[str]:
        """The environments the platform serves (a pipeline's Unleash steps need theirs)."""


class AppliedRecords(Protocol):
    """What the sync applied last for each flag, kept where the rollout state is."""

    async def get(self, flag: str) -> Applied | None: ...
    async def put(self, flag: str, record: Applied) -> None: ...


@dataclass(frozen=True, slots=True)
class StoredSegment:
    """A segment as the store holds it: its record's fields (JSON), and its list's parts."""

    record: dict[str, Any]
    """The record's fields without ``id``, ``ts`` and signature; ``deleted`` when it is gone."""
    parts: list[str] = field(default_factory=list)
    applied: tuple[str, ...] = ()
    """The latest commands and uploads applied to this segment (newest first, at most
    64): a replay of one is refused."""
    delivered: tuple[str, ...] = ()
    """The records (topic:partition:offset) the latest applied commands and upload parts
    were read from (newest first, bounded): one of them read again is no replay."""


class Segments(Protocol):
    """Segments and the parts of uploads under way (see controller.daemon.registries.segments)."""

    async def get(self, name: str, *, with_parts: bool) -> StoredSegment | None: ...
    async def names(self) -> list[str]: ...
    async def put(self, name: str, expected_version: int, segment: StoredSegment) -> bool:
        """Replace the segment if its version is still ``expected_version`` (0: none)."""

    async def stage(
        self, name: str, upload: str, index: int, data: str, *, ttl_s: int, delivery: str = ""
    ) -> int:
        """Keep one part of an upload, and the record it was read from; how many distinct
        parts it now has."""

    async def staged(self, name: str, upload: str) -> dict[int, str]: ...
    async def staged_from(self, name: str, upload: str) -> list[str]:
        """The records the upload's staged parts were read from."""

    async def drop_upload(self, name: str, upload: str) -> None: ...


class ValueOutputs(Protocol):
    """Publishes (topic, key, value) messages where a value may be a tombstone (None)."""

    async def publish_values(self, messages: Sequence[tuple[str, str, bytes | None]]) -> None: ...
