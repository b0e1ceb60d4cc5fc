"""Held events partitions in a real Redis: a shrunk topic is held, chosen for, resumed once.

The broker is a stand-in that reports a topic made again with fewer partitions
(fault injection: the broker side of it runs in the scenario of a broker that
lost its data); what is recorded, chosen and resumed is in a real Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.adapters.redis.ingest_progress import GapStore
from controller.core.machine.log_gaps import LogIdentity
from controller.core.rollouts.actions import RaiseAlert
from controller.core.stats.folding import PartitionDelta
from controller.daemon.ingest.log_gaps import LogGaps, Resumed, uncounted_gap
from controller.settings import RedisSettings
from tests.unit.daemon.ingest.test_partitions import Source

pytestmark = pytest.mark.integration
TOPIC = "gaps.events"


class ShrunkSource(Source):
    """A topic made again with ``count`` partitions, each holding ``end`` records."""

    def __init__(self, count: int, end: int) -> None:
        super().__init__(dict.fromkeys(range(count), end))

    def partition_count(self) -> int | None:
        return len(self.ends)


@pytest.fixture
async def stores(
    redis_url: str, redis_namespace: str
) -> AsyncIterator[tuple[GapStore, RedisAggregateStore]]:
    settings = RedisSettings(url=redis_url, key_prefix=redis_namespace)
    async with connect(settings) as client:
        yield (
            GapStore(client, settings=settings, topic=TOPIC),
            RedisAggregateStore(client, settings=settings, topic=TOPIC),
        )


async def test_a_shrunk_topic_is_held_and_the_choice_resumes_it_once(
    stores: tuple[GapStore, RedisAggregateStore],
) -> None:
    held, aggregates = stores
    await held.record_partitions(12)
    alerts: list[RaiseAlert] = []
    gaps = LogGaps(store=held, topic=TOPIC, alarm=alerts.append)
    source = ShrunkSource(count=4, end=30)
    claim = await aggregates.claim(1)
    # A topic with fewer partitions than recorded holds the partition, though its
    # log holds the (absent) stored offset
    assert (await gaps.at_claim(1, claim.offset, source)).held
    assert [a.kind for a in alerts] == ["events_log_gap"]
    assert "the topic has 4 partitions, 12 recorded" in (gaps.reason() or "")
    assert await held.held() == {1}
    # Nothing resumes before a choice
    assert await gaps.decided(source, {1: claim.epoch}) == {}
    # A choice for a partition not held records nothing
    assert await held.choose([2], "reread", "c0") == []
    assert await held.choose([1], "accept_gap", "c1") == [1]
    # The owner resumes where the log ended when the gap was found, stored atomically
    assert await gaps.decided(source, {1: claim.epoch}) == {1: Resumed(30, LogIdentity(None, 4))}
    assert await aggregates.offset(1) == 30
    assert await held.held() == set()
    assert await held.recorded_partitions() == 4
    assert gaps.reason() is None


async def test_a_choice_is_not_applied_under_a_claim_another_owner_replaced(
    stores: tuple[GapStore, RedisAggregateStore],
) -> None:
    held, aggregates = stores
    gaps = LogGaps(store=held, topic=TOPIC)
    source = ShrunkSource(count=4, end=0)
    first = await aggregates.claim(0)
    assert await gaps.while_owned({0: 500}, source) == [0]
    await aggregates.claim(0)  # another owner's claim meanwhile
    assert await held.choose([0], "reread", "c2") == [0]
    assert await gaps.decided(source, {0: first.epoch}) == {0: None}
    assert await aggregates.offset(0) is None  # the stale owner wrote nothing


async def test_a_held_partition_is_alerted_again_while_it_stays_held(
    stores: tuple[GapStore, RedisAggregateStore],
) -> None:
    held, aggregates = stores
    now = [0.0]
    alerts: list[RaiseAlert] = []
    gaps = LogGaps(
        store=held, topic=TOPIC, alarm=alerts.append, repeat_every=60, clock=lambda: now[0]
    )
    source = ShrunkSource(count=4, end=0)
    claim = await aggregates.claim(2)
    # A broker back empty: the log ends at 0, before the stored offset
    assert await gaps.while_owned({2: 750}, source) == [2]
    assert [a.details["fits"] for a in alerts] == ["reread"]
    reason = gaps.reason() or ""
    assert "`rolloutctl ingest reread` fits p2 (the topic looks new" in reason
    assert "p2: the log ends at offset 0, before the stored offset 750" in reason
    # Found again before the interval: no second alert
    now[0] = 59.0
    assert await gaps.while_owned({2: 750}, source) == [2]
    assert gaps.remind() == []
    assert len(alerts) == 1
    # Still held after the interval: alerted again, and again one interval later
    now[0] = 60.0
    assert gaps.remind() == [2]
    now[0] = 119.0
    assert gaps.remind() == []
    now[0] = 120.0
    assert gaps.remind() == [2]
    assert [a.kind for a in alerts] == ["events_log_gap"] * 3
    # Resumed: never alerted again
    assert await held.choose([2], "reread", "c3") == [2]
    assert await gaps.decided(source, {2: claim.epoch}) == {2: Resumed(0, LogIdentity(None, 4))}
    now[0] = 10_000.0
    assert gaps.remind() == []
    assert len(alerts) == 3


class CutSource(Source):
    """A log whose start retention moved to ``beginning``; it ends at ``end``."""

    def __init__(self, beginning: int, end: int, partitions: int = 4) -> None:
        super().__init__(dict.fromkeys(range(partitions), end))
        self.beginning = beginning

    async def log_range(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        return {p: (self.beginning, self.ends[p]) for p in partitions if p in self.ends}


@pytest.mark.parametrize(
    ("stored", "beginning", "held"),
    [
        (400, 650, True),  # records 400 to 649 deleted before they were counted
        (650, 650, False),  # retention took only what was counted
        (700, 650, False),  # the stored offset is still on the log
        (None, 650, False),  # never counted: nothing to skip
    ],
)
async def test_a_log_that_starts_after_the_stored_offset_is_held_at_claim(
    stores: tuple[GapStore, RedisAggregateStore], stored: int | None, beginning: int, held: bool
) -> None:
    gap_store, _ = stores
    alerts: list[RaiseAlert] = []
    gaps = LogGaps(store=gap_store, topic=TOPIC, alarm=alerts.append)
    assert (await gaps.at_claim(3, stored, CutSource(beginning, end=900))).held is held
    assert await gap_store.held() == ({3} if held else set())
    if held:
        assert [a.details["fits"] for a in alerts] == ["reread"]
        assert f"p3: the log starts at offset {beginning}, after the stored offset" in (
            gaps.reason() or ""
        )


async def test_a_partition_never_counted_whose_log_start_moved_on_is_held_at_first_fetch(
    stores: tuple[GapStore, RedisAggregateStore],
) -> None:
    gap_store, _ = stores
    alerts: list[RaiseAlert] = []
    gaps = LogGaps(store=gap_store, topic=TOPIC, alarm=alerts.append)
    # Given a first claim without an offset, which records where every log starts
    assert not (await gaps.at_claim(0, None, CutSource(20, end=900))).held
    assert [await gap_store.first_start(p) for p in range(4)] == [20, 20, 20, 20]
    # a claim of another never-counted partition holds nothing and asks the broker nothing
    assert not (await gaps.at_claim(3, None, CutSource(500, end=900))).held
    # When partition 3's first records were deleted before anyone counted them, its first
    # fetch serves records from 500: then it is held, reread advised, the loss named
    gap = await uncounted_gap(gap_store, 3, 500, CutSource(500, end=900))
    assert gap is not None
    await gaps.found(gap)
    assert await gap_store.held() == {3}
    assert [a.details["fits"] for a in alerts] == ["reread"]
    assert alerts[0].details["first_start"] == 20
    assert "no offset of it was ever counted, and its log starts at offset 500, after offset" in (
        gaps.reason() or ""
    )
    # while a first fetch from where the log started, or past skipped offsets on a log that
    # still starts there, holds nothing
    assert await uncounted_gap(gap_store, 2, 20, CutSource(20, end=900)) is None
    assert await uncounted_gap(gap_store, 1, 35, CutSource(20, end=900)) is None
    # and a record of the starts is never moved by a later one
    await gap_store.record_starts({2: 700})
    assert await gap_store.first_start(2) == 20


async def test_a_fetch_past_the_stored_offset_holds_only_when_the_log_starts_past_it(
    stores: tuple[GapStore, RedisAggregateStore],
) -> None:
    gap_store, aggregates = stores
    gaps = LogGaps(store=gap_store, topic=TOPIC)
    # Offsets the log skips itself (a transaction's marker): the log still holds 400
    assert not await gaps.cut(1, 400, CutSource(beginning=0, end=900))
    assert await gap_store.held() == set()
    # The client reset to a log start retention moved past 400
    claim = await aggregates.claim(1)
    assert await gaps.cut(1, 400, CutSource(beginning=650, end=900))
    assert await gap_store.held() == {1}
    # reread counts every record the log still holds, from its start
    assert await gap_store.choose([1], "reread", "c4") == [1]
    assert await gaps.decided(CutSource(650, 900), {1: claim.epoch}) == {
        1: Resumed(650, LogIdentity(None, 4))
    }
    assert await aggregates.offset(1) == 650


class RemadeSource(Source):
    """The topic made again: id ``topic_id``, ``count`` partitions, each log ``end`` long."""

    def __init__(self, topic_id: str, count: int, end: int) -> None:
        super().__init__(dict.fromkeys(range(count), end))
        self.topic_id = topic_id

    async def identity(self) -> LogIdentity | None:
        return LogIdentity(self.topic_id, len(self.ends))


@pytest.mark.parametrize("source", [None, "otlp.spans"])
async def test_a_topic_made_again_is_held_however_long_its_logs_and_its_lost_partitions_too(
    redis_url: str, redis_namespace: str, source: str | None
) -> None:
    settings = RedisSettings(url=redis_url, key_prefix=redis_namespace)
    before, after = LogIdentity("id-before", 4), LogIdentity("id-after", 2)
    async with connect(settings) as client:
        held = GapStore(client, settings=settings, topic=TOPIC, source=source)
        aggregates = RedisAggregateStore(client, settings=settings, topic=TOPIC, source=source)
        # Given four partitions counted to offset 100 on the topic as it was, the identity
        # stored with each offset by the flush
        for partition in range(4):
            claim = await aggregates.claim(partition)
            delta = PartitionDelta(partition=partition, next_offset=100)
            await aggregates.flush(delta, epoch=claim.epoch, expected_offset=None, log=before)
        await held.record_partitions(4)
        claim = await aggregates.claim(1)
        assert (claim.offset, claim.log) == (100, before)
        # When the topic comes back with another id, two partitions, logs longer than that
        alerts: list[RaiseAlert] = []
        gaps = LogGaps(store=held, topic=TOPIC, alarm=alerts.append)
        remade = RemadeSource("id-after", count=2, end=5000)
        checked = await gaps.at_claim(1, claim.offset, remade, log=claim.log)
        # Then the partition is held, and so are those the topic lost, alerted each
        assert checked == (True, after)
        assert await held.held() == {1, 2, 3}
        assert sorted(int(str(a.details["partition"])) for a in alerts) == [1, 2, 3]
        assert all(a.details["fits"] == "reread" for a in alerts)
        reason = gaps.reason() or ""
        assert "p1: the topic's id is id-after, id-before recorded" in reason
        assert "p2: the topic has 2 partitions now, none numbered 2" in reason
        # while a partition of the same topic read on stays read (nothing proves otherwise)
        same = await gaps.at_claim(0, 100, RemadeSource("id-before", 4, 5000), log=before)
        assert same == (False, before)
        # When the operator chooses reread for every held partition
        assert await held.choose(sorted(await held.held()), "reread", "c5") == [1, 2, 3]
        # Then the claimed one resumes at the new log's start, on the new log, and the lost
        # ones are retired: read from 0 should the topic grow again
        assert await gaps.decided(remade, {1: claim.epoch}) == {1: Resumed(0, after)}
        assert await held.held() == set()
        assert gaps.reason() is None
        assert [await aggregates.offset(p) for p in (1, 2, 3)] == [0, 0, 0]
        again = await aggregates.claim(1)
        assert (again.offset, again.log) == (0, after)
        assert not (await gaps.at_claim(1, again.offset, remade, log=again.log)).held
        assert (await aggregates.claim(3)).log == after


async def test_partitions_a_topic_lost_stay_found_after_the_instance_that_held_them_is_gone(
    stores: tuple[GapStore, RedisAggregateStore],
) -> None:
    held, aggregates = stores
    before, after = LogIdentity("id-before", 4), LogIdentity("id-after", 2)
    for partition in range(4):
        claim = await aggregates.claim(partition)
        delta = PartitionDelta(partition=partition, next_offset=50)
        await aggregates.flush(delta, epoch=claim.epoch, expected_offset=None, log=before)
    await held.record_partitions(4)
    remade = RemadeSource("id-after", count=2, end=500)
    # An instance holds p0 and the partitions the topic lost, then goes
    first = LogGaps(store=held, topic=TOPIC)
    assert (await first.at_claim(0, 50, remade, log=before)).held
    assert await held.held() == {0, 2, 3}
    # p0 is resumed by the next owner, which records the topic's new count
    claim = await aggregates.claim(0)
    await held.resume(0, epoch=claim.epoch, offset=0, log=after)
    await held.record_partitions(2)
    # Then the claim of any partition finds the lost ones still held, and takes them on
    alerts: list[RaiseAlert] = []
    second = LogGaps(store=held, topic=TOPIC, alarm=alerts.append)
    assert not (await second.at_claim(0, 0, remade, log=after)).held
    assert sorted(second.gaps) == [2, 3]
    assert "p2: the topic has 2 partitions now, none numbered 2" in (second.reason() or "")
    assert await held.choose([2, 3], "reread", "c6") == [2, 3]
    assert await second.decided(remade, {}) == {}
    assert await held.held() == set()
    assert second.reason() is None
