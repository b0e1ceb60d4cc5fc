"""The engine's watch over ingest: held and lagging partitions, and those counted late."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from controller.core.stats.aggregates import FlagAggregates
from controller.daemon.rollouts.completeness import EvidenceWatch, PassedStages
from tests.unit.core.machine.gate.test_gate import rollout
from tests.unit.core.machine.gate.test_late_evidence import HARMED_10, HEALTHY_10

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Progress:
    """Ingest's state as a test sets it."""

    def __init__(self) -> None:
        self.held_now: dict[str, set[int]] = {}
        self.through: dict[str, dict[int, datetime]] = {}

    async def held(self) -> dict[str, set[int]]:
        return self.held_now

    async def counted_through(self) -> dict[str, dict[int, datetime]]:
        return self.through


def watch(progress: Progress, lag: float | None = 30) -> EvidenceWatch:
    max_lag = None if lag is None else timedelta(seconds=lag)
    return EvidenceWatch(progress=progress, max_lag=max_lag, clock=lambda: NOW)


async def test_held_then_released_partitions_are_counted_late_in_the_stage() -> None:
    progress = Progress()
    progress.held_now = {"events": {1, 2, 3}}
    seen = watch(progress)
    await seen.refresh()
    first = seen.for_gate(rollout(), NOW)
    assert first.held == {"events": frozenset({1, 2, 3})}
    assert not first.late
    progress.held_now = {"events": set()}
    # counted through after their release (the reread read what their logs hold)
    progress.through = {"events": dict.fromkeys((1, 2, 3), NOW + timedelta(seconds=1))}
    await seen.refresh()
    after = seen.for_gate(rollout(), NOW)
    assert after.complete
    assert after.late == {"events": frozenset({1, 2, 3})}
    # still late at the next gate of the stage, not in the next stage
    assert seen.for_gate(rollout(), NOW).late == {"events": frozenset({1, 2, 3})}
    assert not seen.for_gate(rollout().model_copy(update={"stage": 1}), NOW).late


async def test_a_partition_counted_through_before_the_horizon_lags() -> None:
    progress = Progress()
    progress.through = {"events": {0: NOW - timedelta(seconds=5), 1: NOW - timedelta(minutes=2)}}
    seen = watch(progress)
    await seen.refresh()
    view = seen.view(NOW)
    assert view.lagging == {"events": frozenset({1})}
    assert view.horizon == NOW - timedelta(seconds=30)
    assert view.waiting() is not None


async def test_a_held_partition_is_named_held_not_lagging() -> None:
    progress = Progress()
    progress.held_now = {"events": {1}}
    progress.through = {"events": {1: NOW - timedelta(hours=1)}}
    seen = watch(progress)
    await seen.refresh()
    view = seen.view(NOW)
    assert view.held == {"events": frozenset({1})}
    assert not view.lagging


async def test_without_a_lag_bound_only_holds_are_waited_for() -> None:
    progress = Progress()
    progress.through = {"events": {1: NOW - timedelta(hours=1)}}
    seen = watch(progress, lag=None)
    await seen.refresh()
    assert seen.view(NOW).complete


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


async def test_a_released_partition_lags_until_counted_through_after_its_release() -> None:
    progress, clock = Progress(), Clock()
    progress.held_now = {"events": {1}}
    progress.through = {"events": {0: NOW, 1: NOW - timedelta(seconds=5)}}
    seen = EvidenceWatch(progress=progress, max_lag=timedelta(seconds=30), clock=clock)
    await seen.refresh()
    assert seen.view().held == {"events": frozenset({1})}
    # released: its reread records are not counted yet, though its last time is recent
    clock.now = NOW + timedelta(seconds=2)
    progress.held_now = {"events": set()}
    progress.through = {"events": {0: clock.now, 1: NOW - timedelta(seconds=5)}}
    await seen.refresh()
    assert seen.view().lagging == {"events": frozenset({1})}
    # counted through after the release: complete
    clock.now = NOW + timedelta(seconds=4)
    progress.through = {"events": {0: clock.now, 1: clock.now}}
    await seen.refresh()
    assert seen.view().complete


async def test_a_released_partition_never_counted_through_falls_to_the_lag_bound() -> None:
    progress, clock = Progress(), Clock()
    progress.held_now = {"events": {1}}
    seen = EvidenceWatch(progress=progress, max_lag=timedelta(seconds=30), clock=clock)
    await seen.refresh()
    progress.held_now = {}
    await seen.refresh()
    assert seen.view().lagging == {"events": frozenset({1})}
    clock.now = NOW + timedelta(seconds=31)
    assert seen.view().complete  # no time recorded for it: nothing to judge it by


class Reads:
    """Aggregates as a test sets them, counting the reads."""

    def __init__(self, data: FlagAggregates) -> None:
        self.data, self.reads = data, 0

    async def read_many(self, wanted: Sequence[tuple[str, Iterable[int]]]) -> list[FlagAggregates]:
        self.reads += 1
        return [self.data for _ in wanted]


async def test_news_within_the_interval_is_owed_and_read_at_a_later_gate() -> None:
    reads = Reads(HARMED_10)
    passed = PassedStages(reads, timedelta(seconds=5))  # type: ignore[arg-type]
    state = rollout().model_copy(update={"stage": 1, "stage_versions": {0: [1], 1: [2]}})
    assert await passed.late(state, NOW, fresh=False) is None  # no news: nothing read
    assert reads.reads == 0
    reads.data = HEALTHY_10
    assert await passed.late(state, NOW, fresh=True) is None
    reads.data = HARMED_10  # counted late, within the interval: owed
    assert await passed.late(state, NOW + timedelta(seconds=1), fresh=True) is None
    assert reads.reads == 1
    found = await passed.late(state, NOW + timedelta(seconds=6), fresh=False)  # a sweep
    assert found is not None
    assert found.evidence.late is not None
    assert found.evidence.late.stage == 0
