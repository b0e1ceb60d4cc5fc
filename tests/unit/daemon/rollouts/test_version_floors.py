"""The one writer asks for a flag's floor only when a start finds no state for it, and
tells the floors each version it saves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from controller.adapters.memory import MemoryAggregates, MemoryOutputs, MemoryStates
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from controller.core.rollouts.rollout import CommandInput
from controller.core.serving import VersionFloors
from controller.core.wire.messages import CommandAction
from controller.daemon.rollouts.engine import Engine, build_engine
from controller.ports import DeadLetter
from controller.settings import EngineSettings, LlmSettings, TopicSettings

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PLAN = Plan(stages=[Stage(percent=5, min_duration=timedelta(hours=1)), Stage(percent=100)])


class NoDeadLetters:
    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        raise AssertionError(f"unexpected dead letters: {letters}")


@dataclass
class CountedFloors:
    """Floors from a table, counting how often one was asked for."""

    floors: VersionFloors = field(default_factory=VersionFloors)
    asked: list[str] = field(default_factory=list)

    async def floor(self, flag: str) -> int:
        self.asked.append(flag)
        return self.floors.floor(flag)

    def saw(self, flag: str, version: int) -> None:
        self.floors.saw(flag, version)

    def forget(self) -> None:
        self.floors = VersionFloors()


def engine(states: MemoryStates, floors: CountedFloors) -> Engine:
    built = build_engine(
        settings=EngineSettings(),
        topics=TopicSettings(),
        states=states,
        aggregates=MemoryAggregates(),
        outputs=MemoryOutputs(),
        dead_letters=NoDeadLetters(),
        llm=LlmSettings(mode="off"),
        advisor=None,
        clock=lambda: NOW,
    )
    built.rollouts.floors = floors
    return built


def command(action: CommandAction, cid: str, flag: str = "checkout") -> CommandInput:
    return CommandInput(
        action=action,
        flag=flag,
        command_id=cid,
        actor="ana",
        now=NOW,
        plan=PLAN if action is CommandAction.START else None,
        new_rollout_id=f"r-{cid}",
        new_salt="s",
    )


async def test_a_start_on_a_flag_the_store_lost_numbers_above_the_topics() -> None:
    states, floors = MemoryStates(), CountedFloors()
    floors.floors.saw("checkout", 7)  # the lost rollout's last flag state
    eng = engine(states, floors)
    await eng.rollouts.apply("checkout", command(CommandAction.START, "c1"))
    rollout = (await states.load("checkout")).rollout
    assert rollout is not None
    assert (rollout.flag_version, rollout.stage_versions) == (8, {0: [8]})
    assert floors.asked == ["checkout"]
    assert floors.floors.floor("checkout") == 8  # told what it saved
    # Then promotes and a later start count on from the store, never asking again
    await eng.rollouts.apply("checkout", command(CommandAction.PROMOTE, "c2"))
    await eng.rollouts.apply("checkout", command(CommandAction.ABORT, "c3"))
    await eng.rollouts.apply("checkout", command(CommandAction.START, "c4"))
    rollout = (await states.load("checkout")).rollout
    assert rollout is not None
    assert rollout.rollout_id == "r-c4"
    assert rollout.flag_version > 9
    assert floors.asked == ["checkout"]
    assert floors.floors.floor("checkout") == rollout.flag_version


async def test_commands_other_than_start_never_ask_for_a_floor() -> None:
    states, floors = MemoryStates(), CountedFloors()
    eng = engine(states, floors)
    await eng.rollouts.apply("unknown", command(CommandAction.PROMOTE, "c1", flag="unknown"))
    assert floors.asked == []
    assert (await states.load("unknown")).rollout is None
