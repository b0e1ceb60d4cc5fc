"""The flag directory: each published flag's rules, and when each of its versions came in force."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.core.common import StoreError
from controller.core.rollouts import Phase, Rollout
from controller.core.rollouts.plan_parts import TelemetryPlan
from controller.daemon.registries.flag_directory import (
    MAX_VERSIONS,
    FlagDirectory,
    Timeline,
    rules_of,
    timeline_after,
)
from tests.unit.core.machine.gate.test_gate import plan, rollout

T0 = datetime(2026, 1, 5, 12, tzinfo=UTC)


def ms(seconds: float) -> int:
    return int((T0 + timedelta(seconds=seconds)).timestamp() * 1000)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def state(
    *, stage: int, versions: dict[int, list[int]], started: float, updated: float, **extra: Any
) -> Rollout:
    current = versions[stage][-1]
    return rollout().model_copy(
        update={
            "stage": stage,
            "stage_versions": versions,
            "flag_version": current,
            "stage_started_at": at(started),
            "updated_at": at(updated),
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("known", "seen", "expected"),
    [
        pytest.param(
            (),
            state(stage=0, versions={0: [1]}, started=0, updated=5),
            ((1, ms(0)),),
            id="a start: its version since the stage began",
        ),
        pytest.param(
            ((1, ms(0)),),
            state(stage=1, versions={0: [1], 1: [2]}, started=60, updated=61),
            ((1, ms(0)), (2, ms(60))),
            id="an advance: the new stage's first version since the stage began",
        ),
        pytest.param(
            ((1, ms(0)), (2, ms(60))),
            state(stage=1, versions={0: [1], 1: [2, 3]}, started=60, updated=90),
            ((1, ms(0)), (2, ms(60)), (3, ms(90))),
            id="a pause within the stage: since the save that made it",
        ),
        pytest.param(
            (),
            state(stage=1, versions={0: [1], 1: [2, 3, 4]}, started=60, updated=120),
            ((2, ms(60)), (4, ms(120))),
            id="first seen mid-stage: the stage's first version and the current one",
        ),
        pytest.param(
            ((7, ms(200)),),
            state(stage=0, versions={0: [8]}, started=150, updated=150),
            ((7, ms(200)), (8, ms(200))),
            id="never before a version already known",
        ),
        pytest.param(
            ((1, ms(0)), (2, ms(60))),
            state(stage=1, versions={0: [1], 1: [2]}, started=60, updated=3600),
            ((1, ms(0)), (2, ms(60))),
            id="a save that made no version changes nothing",
        ),
    ],
)
def test_the_timeline_grows_with_the_versions_seen(
    known: Timeline, seen: Rollout, expected: Timeline
) -> None:
    assert timeline_after(known, seen) == expected


def test_the_timeline_keeps_the_latest_versions() -> None:
    known = tuple((v, ms(v)) for v in range(1, MAX_VERSIONS + 1))
    seen = state(stage=0, versions={0: [MAX_VERSIONS + 1]}, started=999, updated=999)
    grown = timeline_after(known, seen)
    assert len(grown) == MAX_VERSIONS
    assert grown[0] == (2, ms(2))
    assert grown[-1] == (MAX_VERSIONS + 1, ms(999))


def test_the_rules_carry_the_plans_telemetry_or_the_defaults() -> None:
    plain = rules_of(state(stage=0, versions={0: [3]}, started=0, updated=0))
    assert (plain.flag, plain.version, plain.timeline) == ("f", 3, ((3, ms(0)),))
    assert dict(plain.arms) == {"treatment": "treatment", "control": "control"}
    assert (plain.unit_attribute, plain.error_status_min, plain.conversions) == (
        None,
        500,
        frozenset(),
    )
    telemetry = TelemetryPlan(
        variants={"on": "treatment", "off": "control"},
        unit_attribute="user.id",
        error_status_min=400,
        conversions=["checkout_completed"],
    )
    mapped = state(stage=1, versions={0: [3], 1: [4]}, started=60, updated=60, plan=plan())
    rules = rules_of(mapped.model_copy(update={"plan": plan(telemetry=telemetry)}), plain)
    assert dict(rules.arms) == {"on": "treatment", "off": "control"}
    assert (rules.unit_attribute, rules.error_status_min) == ("user.id", 400)
    assert rules.conversions == frozenset({"checkout_completed"})
    assert rules.timeline == ((3, ms(0)), (4, ms(60)))


class Source:
    """Rollouts as the store holds them, and how often they were read."""

    def __init__(self, rollouts: Sequence[Rollout]) -> None:
        self.rollouts = list(rollouts)
        self.reads = 0

    async def __call__(self) -> Sequence[Rollout]:
        self.reads += 1
        return self.rollouts


async def test_the_directory_knows_published_flags_and_reloads_once_stale() -> None:
    now = [0.0]
    published = state(stage=0, versions={0: [1]}, started=0, updated=0)
    scheduled = rollout().model_copy(
        update={"flag": "later", "flag_version": 0, "phase": Phase.PENDING}
    )
    source = Source([published, scheduled])
    directory = FlagDirectory(source, max_age=1.0, clock=lambda: now[0])
    assert directory.lookup("f") is None  # nothing loaded yet
    await directory.fresh()
    found = directory.lookup("f")
    assert found is not None
    assert found.version == 1
    assert directory.lookup("later") is None
    assert directory.lookup("nope") is None
    await directory.fresh()
    assert source.reads == 1  # fresh enough
    source.rollouts = [state(stage=1, versions={0: [1], 1: [2]}, started=30, updated=30)]
    now[0] = 1.5
    await directory.fresh()
    reload = directory._reload
    assert reload is not None
    await reload
    found = directory.lookup("f")
    assert found is not None
    assert (found.version, found.timeline) == (2, ((1, ms(0)), (2, ms(30))))
    assert directory.flags == 1
    await directory.close()


async def test_a_failed_reload_keeps_the_flags_held() -> None:
    now = [0.0]
    source = Source([state(stage=0, versions={0: [1]}, started=0, updated=0)])
    directory = FlagDirectory(source, max_age=1.0, clock=lambda: now[0])
    await directory.fresh()

    async def down() -> Sequence[Rollout]:
        raise ConnectionError("redis down")

    directory._load = down
    now[0] = 2.0
    await directory.fresh()
    assert directory._reload is not None
    await asyncio.gather(directory._reload, return_exceptions=True)
    assert directory.lookup("f") is not None


async def test_a_read_since_a_time_reads_again_only_when_the_flags_held_are_older() -> None:
    wall = [100.0]
    source = Source([])
    directory = FlagDirectory(source, max_age=60.0, wall=lambda: wall[0])
    await directory.fresh()  # read from 100 s
    source.rollouts = [state(stage=0, versions={0: [1]}, started=0, updated=0)]
    # an evaluation made before that read began: the flags held answer for it
    await directory.read_since(99_000)
    assert (source.reads, directory.lookup("f")) == (1, None)
    # one made after it (or said to be made later than now): read again, at once
    wall[0] = 101.0
    await directory.read_since(10**15)
    assert source.reads == 2
    assert directory.lookup("f") is not None
    # a store that fails leaves the flags held
    wall[0] = 102.0

    async def down() -> Sequence[Rollout]:
        raise StoreError("redis down")

    directory._load = down
    await directory.read_since(101_500)
    assert directory.lookup("f") is not None


async def test_a_read_that_began_earlier_and_came_back_later_leaves_the_later_reads_flags() -> None:
    wall = [100.0]
    slow = asyncio.Event()
    source = Source([])
    directory = FlagDirectory(source, max_age=0.0, wall=lambda: wall[0])

    async def first() -> Sequence[Rollout]:
        await slow.wait()
        return []

    directory._load = first
    early = asyncio.create_task(directory._refresh())  # begins at 100 s, held
    await asyncio.sleep(0)
    wall[0] = 101.0
    directory._load = Source([state(stage=0, versions={0: [1]}, started=0, updated=0)])
    await directory.read_since(100_500)
    slow.set()
    await early
    assert directory.lookup("f") is not None


async def test_a_read_asked_for_that_hangs_gives_up_and_leaves_the_flags_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wall = [100.0]
    source = Source([state(stage=0, versions={0: [1]}, started=0, updated=0)])
    directory = FlagDirectory(source, max_age=60.0, wall=lambda: wall[0])
    await directory.fresh()
    hung = asyncio.Event()

    async def hangs() -> Sequence[Rollout]:
        await hung.wait()  # a store that never answers
        return []

    directory._load = hangs
    monkeypatch.setattr("controller.daemon.registries.flag_directory.READ_DEADLINE_SECONDS", 0.05)
    wall[0] = 101.0
    await asyncio.wait_for(directory.read_since(100_900), timeout=30)  # returns, not hangs
    assert directory.lookup("f") is not None
