"""In-memory implementations of the ports, for unit tests and benchmarks of the services.

They keep the semantics the services rely on (compare-and-set revisions,
commands applied once, outbox order, dirty flags popped once) and nothing
else: no persistence, no concurrency beyond one event loop. The Kafka and
Redis adapters are proved by the integration tests; these never stand in for
them there.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace

from controller.core.common import StoreError
from controller.core.release import PipelineState
from controller.core.rollouts import Rollout
from controller.core.serving import Applied
from controller.core.stats import ArmAggregate, FlagAggregates
from controller.ports import (
    CommandSeen,
    DeadLetter,
    Loaded,
    OutboxMessage,
    Record,
    RunLoaded,
    SaveOutcome,
    StateWrite,
    StoredSegment,
)


@dataclass
class MemoryStates:
    """:class:`~controller.ports.RolloutStates` in dictionaries."""

    docs: dict[str, tuple[int, Rollout]] = field(default_factory=dict)
    outbox: dict[str, list[OutboxMessage]] = field(default_factory=dict)
    commands: set[str] = field(default_factory=set)
    deliveries: set[str] = field(default_factory=set)
    quarantined: list[tuple[str, str, OutboxMessage]] = field(default_factory=list)
    drains: dict[str, str] = field(default_factory=dict)
    loads: int = 0

    async def load(self, flag: str) -> Loaded:
        self.loads += 1
        if flag not in self.docs:
            return Loaded(0, None)
        rev, doc = self.docs[flag]
        return Loaded(rev, doc)

    async def load_many(self, flags: Sequence[str]) -> list[Loaded | StoreError]:
        return [await self.load(flag) for flag in flags]

    async def load_all(self) -> dict[str, Loaded | StoreError]:
        return {flag: Loaded(*self.docs[flag]) for flag in sorted(self.docs)}

    async def save(self, flag: str, write: StateWrite) -> SaveOutcome:
        if write.command_id in self.commands:
            return SaveOutcome.ALREADY_APPLIED
        current = self.docs.get(flag, (0, None))[0]
        if write.rev not in (-1, current):
            return SaveOutcome.CONFLICT
        if write.rollout is not None:
            self.docs[flag] = (current + 1, write.rollout)
        if write.command_id:
            self.commands.add(write.command_id)
        if write.command_id and write.delivery:
            self.deliveries.add(write.delivery)
        fresh = [replace(m, id=m.id or uuid.uuid4().hex) for m in write.outbox]
        self.outbox.setdefault(flag, []).extend(fresh)
        return SaveOutcome.SAVED

    async def seen(self, flag: str, command_id: str, delivery: str = "") -> CommandSeen:
        here = bool(delivery) and delivery in self.deliveries
        return CommandSeen.of(applied=command_id in self.commands, from_this_record=here)

    async def pending(self, flag: str) -> list[OutboxMessage]:
        return list(self.outbox.get(flag, []))

    async def published(self, flag: str, ids: Sequence[str]) -> int:
        confirmed, queue = set(ids), self.outbox.get(flag, [])
        dropped = next((i for i, m in enumerate(queue) if m.id not in confirmed), len(queue))
        self.outbox[flag] = queue[dropped:]
        return dropped

    async def replicated(self, flag: str) -> None:
        """Memory has no replicas to wait for."""

    async def hold_drain(self, flag: str, token: str, *, ttl_ms: int) -> bool:
        holder = self.drains.setdefault(flag, token)
        return holder == token

    async def end_drain(self, flag: str, token: str) -> None:
        if self.drains.get(flag) == token:
            del self.drains[flag]

    async def quarantine(self, flag: str, reason: str) -> OutboxMessage | None:
        if not self.outbox.get(flag):
            return None
        message, self.outbox[flag] = self.outbox[flag][0], self.outbox[flag][1:]
        self.quarantined.append((flag, reason, message))
        return message

    async def flags(self) -> set[str]:
        return set(self.docs)


@dataclass
class MemoryRuns:
    """:class:`~controller.ports.PipelineRuns` in dictionaries."""

    docs: dict[str, tuple[int, PipelineState]] = field(default_factory=dict)
    outbox: dict[str, list[OutboxMessage]] = field(default_factory=dict)
    by_flag: dict[str, list[str]] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)

    async def index(self, flag: str, run_id: str, at_ms: int) -> None:
        runs = self.by_flag.setdefault(flag, [])
        if run_id not in runs:
            runs.append(run_id)
        self.active.add(run_id)

    async def load(self, run_id: str) -> RunLoaded:
        return RunLoaded(*self.docs[run_id]) if run_id in self.docs else RunLoaded(0, None)

    async def save(
        self, run_id: str, rev: int, state: PipelineState, outbox: Sequence[OutboxMessage]
    ) -> bool:
        if self.docs.get(run_id, (0, None))[0] != rev:
            return False
        self.docs[run_id] = (rev + 1, state)
        fresh = [replace(m, id=m.id or uuid.uuid4().hex) for m in outbox]
        self.outbox.setdefault(run_id, []).extend(fresh)
        return True

    async def with_runs(self, flags: Collection[str]) -> set[str]:
        return {f for f in flags if self.by_flag.get(f)}

    async def finished(self, run_id: str) -> None:
        self.active.discard(run_id)

    async def runs_of(self, flag: str) -> list[str]:
        return list(reversed(self.by_flag.get(flag, [])))

    async def running(self) -> set[str]:
        return set(self.active)

    async def pending(self, run_id: str) -> list[OutboxMessage]:
        return list(self.outbox.get(run_id, []))

    async def published(self, run_id: str, ids: Sequence[str]) -> int:
        confirmed, queue = set(ids), self.outbox.get(run_id, [])
        dropped = next((i for i, m in enumerate(queue) if m.id not in confirmed), len(queue))
        self.outbox[run_id] = queue[dropped:]
        return dropped


@dataclass
class MemoryAggregates:
    """:class:`~controller.ports.AggregateReader` with no traffic: every read is empty."""

    dirty: set[str] = field(default_factory=set)
    reads: int = 0

    async def read(self, flag: str, versions: Iterable[int]) -> FlagAggregates:
        self.reads += 1
        return FlagAggregates(flag, frozenset(versions), ArmAggregate(), ArmAggregate())

    async def read_many(self, wanted: Sequence[tuple[str, Iterable[int]]]) -> list[FlagAggregates]:
        return [await self.read(flag, versions) for flag, versions in wanted]

    async def pop_dirty(self, limit: int = 10_000) -> set[str]:
        popped, self.dirty = self.dirty, set()
        return popped

    async def mark_dirty(self, flags: set[str]) -> None:
        self.dirty |= flags


@dataclass
class MemoryOutputs:
    """:class:`~controller.ports.Outputs` that keeps what was published, in order."""

    sent: list[tuple[str, str, bytes]] = field(default_factory=list)

    async def publish(self, messages: list[tuple[str, str, bytes]]) -> None:
        self.sent.extend(messages)


@dataclass
class MemoryValueOutputs:
    """:class:`~controller.ports.ValueOutputs` that keeps what was published (None: tombstones)."""

    sent: list[tuple[str, str, bytes | None]] = field(default_factory=list)

    async def publish_values(self, messages: Sequence[tuple[str, str, bytes | None]]) -> None:
        self.sent.extend(messages)


@dataclass
class MemoryControl:
    """:class:`~controller.ports.ControlSource` with no records, owning the flags in ``mine``."""

    mine: set[str] = field(default_factory=set)

    async def fetch(self, *, timeout_ms: int) -> list[Record]:
        return []

    async def commit(self) -> None:
        return None

    def owns(self, flag: str) -> bool:
        return flag in self.mine


@dataclass
class MemoryDeadLetters:
    """:class:`~controller.ports.DeadLetters` that keeps the letters."""

    letters: list[DeadLetter] = field(default_factory=list)

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)


@dataclass
class MemoryGateHistory:
    """:class:`~controller.ports.GateHistory` in dictionaries, with the Redis store's caps."""

    max_points_per_stage: int = 1000
    decisions_kept: int = 200
    alerts_kept: int = 200
    lists: dict[str, list[bytes]] = field(default_factory=dict)

    def _push(self, key: str, value: bytes, keep: int) -> None:
        self.lists[key] = [*self.lists.get(key, []), value][-keep:]

    async def append_point(self, flag: str, rollout_id: str, stage: int, point: bytes) -> None:
        self._push(f"{flag}:{rollout_id}:{stage}", point, self.max_points_per_stage)

    async def points(self, flag: str, rollout_id: str, stages: int) -> list[list[bytes]]:
        return [list(self.lists.get(f"{flag}:{rollout_id}:{s}", [])) for s in range(stages)]

    async def latest(self, stages: Sequence[tuple[str, str, int]]) -> list[bytes | None]:
        found = (self.lists.get(f"{f}:{r}:{s}") for f, r, s in stages)
        return [points[-1] if points else None for points in found]

    async def append_message(self, flag: str | None, message: bytes, *, alert: bool) -> None:
        if flag is not None:
            self._push(f"{flag}:messages", message, self.decisions_kept)
        if alert:
            self._push("alerts", message, self.alerts_kept)

    async def messages(self, flag: str) -> list[bytes]:
        return list(self.lists.get(f"{flag}:messages", []))

    async def recent_alerts(self, limit: int) -> list[bytes]:
        return list(reversed(self.lists.get("alerts", [])[-limit:]))


@dataclass
class MemoryApplied:
    """:class:`~controller.ports.AppliedRecords` in a dictionary."""

    records: dict[str, Applied] = field(default_factory=dict)

    async def get(self, flag: str) -> Applied | None:
        return self.records.get(flag)

    async def put(self, flag: str, record: Applied) -> None:
        self.records[flag] = record


@dataclass
class MemorySegments:
    """:class:`~controller.ports.Segments`: records with their parts, and uploads under way."""

    held: dict[str, StoredSegment] = field(default_factory=dict)
    uploads: dict[tuple[str, str], dict[int, str]] = field(default_factory=dict)
    upload_records: dict[tuple[str, str], dict[int, str]] = field(default_factory=dict)

    async def get(self, name: str, *, with_parts: bool) -> StoredSegment | None:
        found = self.held.get(name)
        if found is None or with_parts:
            return found
        return replace(found, parts=[])

    async def names(self) -> list[str]:
        return sorted(self.held)

    async def put(self, name: str, expected_version: int, segment: StoredSegment) -> bool:
        found = self.held.get(name)
        if (found.record["version"] if found is not None else 0) != expected_version:
            return False
        self.held[name] = segment
        return True

    async def stage(
        self, name: str, upload: str, index: int, data: str, *, ttl_s: int, delivery: str = ""
    ) -> int:
        parts = self.uploads.setdefault((name, upload), {})
        parts[index] = data
        if delivery:
            self.upload_records.setdefault((name, upload), {})[index] = delivery
        return len(parts)

    async def staged(self, name: str, upload: str) -> dict[int, str]:
        return dict(self.uploads.get((name, upload), {}))

    async def staged_from(self, name: str, upload: str) -> list[str]:
        return list(self.upload_records.get((name, upload), {}).values())

    async def drop_upload(self, name: str, upload: str) -> None:
        self.uploads.pop((name, upload), None)
        self.upload_records.pop((name, upload), None)
