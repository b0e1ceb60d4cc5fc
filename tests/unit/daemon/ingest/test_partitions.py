"""Which events partitions ingest owns, and what /readyz and the lag gauge say of the others."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from controller.core.common.errors import FencedError, LostWrites
from controller.core.machine.log_gaps import LogIdentity
from controller.core.stats.folding import PartitionDelta
from controller.daemon.ingest.partitions import Partitions
from controller.daemon.metrics import Metrics
from controller.ports import Claim, FlushOutcome, Record

LATER = 1_000.0  # seconds past any stall limit used here


class Source:
    """An events source that fetches nothing: ends known, seeks and pauses recorded."""

    def __init__(self, ends: dict[int, int]) -> None:
        self.ends = ends
        self.paused: set[int] = set()
        self.sought: dict[int, int | None] = {}

    async def fetch(self, *, timeout_ms: int, max_records: int) -> dict[int, list[Record]]:
        return {}

    async def seek(self, partition: int, offset: int | None) -> None:
        self.sought[partition] = offset

    def pause(self, partitions: list[int]) -> None:
        self.paused.update(partitions)

    def resume(self, partitions: list[int]) -> None:
        self.paused.difference_update(partitions)

    async def commit(self, offsets: dict[int, int]) -> None:
        pass

    def highwater(self, partition: int) -> int | None:
        return self.ends.get(partition)

    def read_to(self, partition: int) -> int | None:
        return None

    async def end_offsets(self, partitions: list[int]) -> dict[int, int]:
        return {p: self.ends[p] for p in partitions if p in self.ends}

    async def log_range(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        return {p: (0, self.ends[p]) for p in partitions if p in self.ends}

    def partition_count(self) -> int | None:
        return len(self.ends) or None

    async def identity(self) -> LogIdentity | None:
        count = self.partition_count()
        return None if count is None else LogIdentity(None, count)


class Store:
    """Claims at the offsets given; flushes are not this test's business."""

    def __init__(self, offsets: dict[int, int]) -> None:
        self.offsets = offsets
        self.epochs: dict[int, int] = {}

    async def claim(self, partition: int) -> Claim:
        self.epochs[partition] = self.epochs.get(partition, 0) + 1
        return Claim(partition, self.epochs[partition], self.offsets.get(partition))

    async def flush(
        self,
        delta: PartitionDelta,
        *,
        epoch: int,
        expected_offset: int | None,
        log: LogIdentity | None = None,
    ) -> FlushOutcome:
        raise AssertionError("not flushed here")


async def once(call: Callable[[], Awaitable[Claim]], _what: str) -> Claim | None:
    return await call()


async def owning(metrics: Metrics, source: Source, offsets: dict[int, int]) -> Partitions:
    parts = Partitions(metrics=metrics, stall_after=5)
    parts.assigned(sorted(offsets))
    await parts.claim_pending(source, Store(offsets), once)
    return parts


def test_an_assigned_partition_not_yet_claimed_stalls_readiness() -> None:
    parts = Partitions(metrics=Metrics(), stall_after=5)
    parts.assigned([2])
    assert parts.waiting_ids() == [2]
    assert parts.stalled(time.monotonic(), None) is None  # not for long yet
    stalled = parts.stalled(time.monotonic() + LATER, None)
    assert stalled is not None
    assert "claiming" in stalled


async def test_a_partition_behind_without_progress_stalls_even_while_others_flow() -> None:
    source = Source({0: 100, 1: 900})
    parts = await owning(Metrics(), source, {0: 100, 1: 100})
    assert source.sought == {0: 100, 1: 100}
    assert parts.waiting_ids() == []
    stalled = parts.stalled(time.monotonic() + LATER, source)
    assert stalled is not None
    assert "{1: 800}" in stalled
    assert "0:" not in stalled


async def test_lost_writes_claim_again_and_show_the_real_lag() -> None:
    metrics = Metrics()
    source = Source({3: 5733})
    parts = await owning(metrics, source, {3: 5733})
    owned = parts.owned[3]
    error = LostWrites("lost", stored_offset=5522)
    alert = parts.lost(3, owned, error, source)
    assert alert is not None
    assert alert.kind == "store_lost_writes"
    assert alert.details == {"partition": 3, "stored_offset": 5522, "acknowledged": 5733}
    assert parts.to_claim == {3}
    assert source.paused == {3}
    assert parts.owned == {}
    assert parts.lost(3, owned, error, source) is None  # once per claim
    stalled = parts.stalled(time.monotonic() + LATER, source)
    assert stalled is not None
    assert "replaying" in stalled
    # a paused partition's end comes from the broker: the gauge shows the backlog
    parts.ends_known({3: 12_000})
    parts.observe_lag(source)
    assert 'rollout_ingest_consumer_lag{partition="3"} 6267.0' in metrics.exposition().decode()
    assert 'rollout_store_lost_writes_total{partition="3"} 1.0' in metrics.exposition().decode()
    # claimed again, it is read from the offset Redis kept, under a new claim
    await parts.claim_pending(source, Store({3: 5522}), once)
    assert source.sought[3] == 5522
    assert 3 not in source.paused
    assert not parts.current(3, owned)
    assert parts.waiting_ids() == []


async def test_a_fenced_partition_stays_listed_until_revoked() -> None:
    parts = await owning(Metrics(), Source({}), {4: 10})
    parts.fenced(4, parts.owned[4], FencedError("newer epoch"))
    assert parts.owned == {}
    assert parts.waiting_ids() == [4]
    parts.revoked([4])
    assert parts.waiting_ids() == []
    assert parts.assigned_ids == []
