"""The Unleash sync's own logic: the engine on in-memory ports, a scripted Unleash."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from controller.adapters.memory import (
    MemoryAggregates,
    MemoryApplied,
    MemoryDeadLetters,
    MemoryOutputs,
    MemoryStates,
)
from controller.adapters.unleash.answers import BackendUnavailable
from controller.core.common.errors import ConfigError, ControllerError
from controller.core.machine import commands
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Backend, Stage, UnleashTarget
from controller.core.rollouts.rollout import CommandInput, Phase
from controller.core.rules.held_segments import HeldSegments
from controller.core.serving.serving import Serving, Target
from controller.core.wire.messages import CommandAction
from controller.daemon.backends.sync import BackendSync, NudgingOutputs
from controller.daemon.metrics import BackendMetrics
from controller.daemon.rollouts.engine import Engine, build_engine
from controller.settings import EngineSettings, TopicSettings, UnleashSettings
from tests.support.waiting import eventually

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
FLAG = "checkout"
PLAN = Plan(
    stages=[
        Stage(percent=p, min_duration=timedelta(hours=1), min_units_per_arm=0 if p == 100 else 100)
        for p in (5, 25, 100)
    ],
    backend=Backend(unleash=UnleashTarget(feature="new-checkout")),
)

TOPICS = TopicSettings()


@dataclass
class ScriptedUnleash:
    """:class:`~controller.ports.FlagBackend` that serves what it was told, or is down."""

    serving: Serving = field(default_factory=lambda: Serving(enabled=False, exists=False))
    down: bool = False
    writes: list[Serving] = field(default_factory=list)
    reads: int = 0

    async def read(self, target: Target) -> Serving:
        self.reads += 1
        if self.down:
            raise BackendUnavailable("Unleash unreachable: ConnectError")
        return self.serving

    async def write(self, target: Target, want: Serving, actual: Serving, *, flag: str) -> None:
        if self.down:
            raise BackendUnavailable("Unleash unreachable: ConnectError")
        self.writes.append(want)
        if want.enabled:
            self.serving = dataclasses.replace(want, strategy_id="s-1")
        else:
            self.serving = dataclasses.replace(self.serving, enabled=False)

    async def environments(self) -> frozenset[str]:
        if self.down:
            raise BackendUnavailable("Unleash unreachable: ConnectError")
        return frozenset({"development", "production"})


@dataclass
class World:
    engine: Engine
    sync: BackendSync
    unleash: ScriptedUnleash
    states: MemoryStates
    outputs: MemoryOutputs
    records: MemoryApplied

    def alerts(self, kind: str) -> list[dict[str, object]]:
        messages = [orjson.loads(v) for t, _, v in self.outputs.sent if t == TOPICS.alerts]
        return [m for m in messages if m["kind"] == kind]

    async def command(self, action: CommandAction, command_id: str) -> None:
        await self.engine.rollouts.apply(FLAG, command(action, command_id))

    async def phase(self) -> Phase:
        rollout = (await self.states.load(FLAG)).rollout
        assert rollout is not None
        return rollout.phase

    async def sync_once(self, flags: list[str]) -> set[str]:
        """Sync each flag once, all at the same time; the ones to try again."""
        done = await asyncio.gather(*(self.sync._attempt(flag) for flag in flags))
        return {flag for flag, ok in zip(flags, done, strict=True) if not ok}


def command(action: CommandAction, command_id: str) -> CommandInput:
    return CommandInput(
        action=action,
        flag=FLAG,
        command_id=command_id,
        actor="ana",
        now=NOW,
        plan=PLAN if action is CommandAction.START else None,
        new_rollout_id="r1",
        new_salt="s",
    )


@pytest.fixture
def world() -> World:
    return make_world()


def make_world(metrics: BackendMetrics | None = None, *, later: timedelta = timedelta()) -> World:
    """The engine (deciding at ``NOW``) and the sync (``later``) on in-memory ports."""
    states, outputs, records, unleash = (
        MemoryStates(),
        MemoryOutputs(),
        MemoryApplied(),
        ScriptedUnleash(),
    )
    settings = UnleashSettings(url="http://unleash", sync_interval_seconds=3600)
    sync = BackendSync(
        backend=unleash,
        records=records,
        states=states,
        settings=settings,
        topics=TOPICS,
        outputs=outputs,
        clock=lambda: NOW + later,
        metrics=metrics,
    )
    engine = build_engine(
        settings=EngineSettings(),
        topics=TOPICS,
        states=states,
        aggregates=MemoryAggregates(),
        outputs=NudgingOutputs(outputs, flag_state_topic=TOPICS.flag_state, nudge=sync.nudge),
        dead_letters=MemoryDeadLetters(),
        clock=lambda: NOW,
    )
    sync.attach(engine.rollouts.apply)
    return World(engine, sync, unleash, states, outputs, records)


@contextlib.asynccontextmanager
async def running(sync: BackendSync) -> AsyncIterator[None]:
    task = asyncio.create_task(sync.run())
    try:
        yield
    finally:
        sync.stop()
        await task


async def test_each_decision_reaches_unleash_when_the_flag_state_is_published(
    world: World,
) -> None:
    async with running(world.sync):
        await world.command(CommandAction.START, "c1")
        await eventually(lambda: world.unleash.serving.percent == 5, timeout=5, what="5% served")
        assert world.unleash.serving.enabled
        await world.command(CommandAction.PROMOTE, "c2")
        await eventually(lambda: world.unleash.serving.percent == 25, timeout=5, what="25% served")
        await world.command(CommandAction.KILL, "c3")
        await eventually(lambda: not world.unleash.serving.enabled, timeout=5, what="off")
    assert world.unleash.serving.percent == 25  # the strategy is left as it was


async def test_a_changed_segment_sweeps_at_once_not_at_the_next_interval(world: World) -> None:
    reads: list[str] = []

    async def held(before: HeldSegments) -> HeldSegments:
        reads.append("read")
        return before

    world.sync.attach(world.engine.rollouts.apply, held)
    await world.command(CommandAction.START, "c1")
    async with running(world.sync):  # the interval is an hour: only the first sweep is due
        await eventually(lambda: world.sync.passes == 1, timeout=5, what="the first sweep")
        world.sync.segment_changed("beta")
        await eventually(lambda: world.sync.passes == 2, timeout=5, what="a sweep at once")
    assert reads == ["read", "read"]  # each sweep read the segments again


async def test_a_write_already_in_place_is_not_made_again(world: World) -> None:
    await world.command(CommandAction.START, "c1")
    for _ in range(3):
        await world.sync.sync(FLAG)
    assert len(world.unleash.writes) == 1


async def test_unleash_down_alerts_once_and_the_last_decision_lands_when_back(
    world: World,
) -> None:
    world.unleash.down = True
    async with running(world.sync):
        await world.command(CommandAction.START, "c1")
        await world.command(CommandAction.PROMOTE, "c2")
        await eventually(lambda: world.unleash.reads >= 3, timeout=5, what="three failed tries")
        assert len(world.alerts("backend_unreachable")) == 1
        world.unleash.down = False
        await eventually(
            lambda: world.unleash.serving.percent == 25, timeout=5, what="25% served once back"
        )
        await eventually(
            lambda: world.alerts("backend_recovered"), timeout=5, what="the recovery alert"
        )
    assert len(world.alerts("backend_unreachable")) == 1
    assert len(world.alerts("backend_recovered")) == 1
    assert [w.percent for w in world.unleash.writes] == [25]  # the decisions collapsed


async def test_a_person_s_change_pauses_the_rollout_and_is_never_overwritten(
    world: World,
) -> None:
    await world.command(CommandAction.START, "c1")
    await world.sync.sync(FLAG)
    world.unleash.serving = dataclasses.replace(world.unleash.serving, percent=40)
    await world.sync.sync(FLAG)
    assert await world.phase() is Phase.PAUSED
    (alert,) = world.alerts("backend_drift")
    assert "rollout was changed from 5% to 40%" in str(alert["summary"])
    for _ in range(3):  # the pause published a flag state too: still not written
        await world.sync.sync(FLAG)
    assert world.unleash.serving.percent == 40
    assert len(world.unleash.writes) == 1
    await world.command(CommandAction.RESUME, "c2")  # the operator takes it back
    await world.sync.sync(FLAG)
    assert world.unleash.serving.percent == 5
    assert len(world.alerts("backend_drift")) == 1


async def test_a_change_while_paused_is_alerted_and_left_alone(world: World) -> None:
    await world.command(CommandAction.START, "c1")
    await world.command(CommandAction.PAUSE, "c2")
    await world.sync.sync(FLAG)
    world.unleash.serving = dataclasses.replace(world.unleash.serving, enabled=False)
    await world.sync.sync(FLAG)
    await world.sync.sync(FLAG)
    (alert,) = world.alerts("backend_drift")
    assert "turned off" in str(alert["summary"])
    assert await world.phase() is Phase.PAUSED
    assert not world.unleash.serving.enabled


async def test_rollouts_without_unleash_are_left_alone(world: World) -> None:
    plain = dataclasses.replace(
        command(CommandAction.START, "c1"), plan=Plan(stages=[Stage(percent=5)])
    )
    await world.engine.rollouts.apply(FLAG, plain)
    await world.sync.sync(FLAG)
    assert world.unleash.reads == 0


def test_a_plan_for_unleash_is_refused_by_a_controller_without_unleash() -> None:
    data = PLAN.model_dump(mode="json")
    with pytest.raises(ConfigError, match=r"backend\.unleash: this controller has no Unleash"):
        commands.plan(data, backends=frozenset(), now=NOW)
    assert commands.plan(data, backends=frozenset({"unleash"}), now=NOW) == PLAN


async def test_a_flag_unleash_refuses_for_good_is_alerted_once_and_tried_each_sweep(
    world: World,
) -> None:
    async def refuse(target: Target) -> Serving:
        raise ControllerError("Unleash refused to read the feature: HTTP 400")

    world.unleash.read = refuse  # type: ignore[method-assign]
    await world.command(CommandAction.START, "c1")
    for _ in range(3):
        assert await world.sync_once([FLAG]) == set()  # not retried in a tight loop
    (alert,) = world.alerts("input_failed")
    assert "HTTP 400" in str(alert["summary"])


async def test_only_an_answer_from_unleash_ends_an_outage(world: World) -> None:
    plain = dataclasses.replace(
        command(CommandAction.START, "c0"), flag="plain", plan=Plan(stages=[Stage(percent=5)])
    )
    await world.engine.rollouts.apply("plain", plain)
    await world.command(CommandAction.START, "c1")
    world.unleash.down = True
    assert await world.sync_once([FLAG, "plain"]) == {FLAG}
    assert await world.sync_once(["plain"]) == set()  # no Unleash asked: still down
    assert world.alerts("backend_recovered") == []
    world.unleash.down = False
    assert await world.sync_once([FLAG]) == set()
    assert len(world.alerts("backend_unreachable")) == 1
    assert len(world.alerts("backend_recovered")) == 1


async def test_drift_is_alerted_even_when_the_pause_did_not_happen(world: World) -> None:
    await world.command(CommandAction.START, "c1")
    await world.sync.sync(FLAG)

    async def moved_meanwhile(flag: str, event: object) -> None:
        """The rollout left ``running`` between the read and the pause: no pause, no alert."""

    world.sync.attach(moved_meanwhile)
    world.unleash.serving = dataclasses.replace(world.unleash.serving, percent=40)
    await world.sync.sync(FLAG)
    (alert,) = world.alerts("backend_drift")
    assert "not overwritten" in str(alert["summary"])
    assert await world.phase() is Phase.RUNNING
