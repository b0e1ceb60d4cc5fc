"""A gate pass reads its flags' states and aggregates a batch at a time, not flag by flag."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from controller.adapters.memory import (
    MemoryAggregates,
    MemoryControl,
    MemoryDeadLetters,
    MemoryOutputs,
    MemoryStates,
)
from controller.core.common import StoreError
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.rollouts.rollout import CommandInput, Phase
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.wire.messages import CommandAction
from controller.daemon.rollouts.engine import Engine, build_engine
from controller.daemon.rollouts.gates import GATE_BATCH
from controller.ports import Loaded
from controller.settings import EngineSettings, TopicSettings

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
# Advances at once on healthy numbers; rolls back on a third of requests failing.
PLAN = Plan(
    stages=[Stage(percent=p, min_duration=timedelta(0), min_units_per_arm=0) for p in (50, 100)],
    guardrails=[Guardrail(metric="error_rate")],
)


@dataclass
class CountingStates(MemoryStates):
    """Counts the batched loads apart from the loads of one flag."""

    batches: list[int] = field(default_factory=list)
    in_batch: int = 0

    async def load_many(self, flags: Sequence[str]) -> list[Loaded | StoreError]:
        self.batches.append(len(flags))
        self.in_batch += len(flags)
        return await super().load_many(flags)


@dataclass
class CountingAggregates(MemoryAggregates):
    """Healthy numbers for every flag except ``bad*``; counts the batched reads apart."""

    batches: list[int] = field(default_factory=list)
    in_batch: int = 0
    broken_batch: bool = False
    """Every batched read fails for good (as a damaged key in it would make it)."""
    damaged: set[str] = field(default_factory=set)
    """Flags whose own read fails for good."""

    async def read(self, flag: str, versions: Iterable[int]) -> FlagAggregates:
        self.reads += 1
        if flag in self.damaged:
            raise StoreError(f"{flag}: WRONGTYPE")
        errors = 300 if flag.startswith("bad") else 10
        return FlagAggregates(
            flag,
            frozenset(versions),
            ArmAggregate(exposures=1000, units=1000, requests=1000, errors=errors),
            ArmAggregate(exposures=1000, units=1000, requests=1000, errors=10),
        )

    async def read_many(self, wanted: Sequence[tuple[str, Iterable[int]]]) -> list[FlagAggregates]:
        self.batches.append(len(wanted))
        if self.broken_batch:
            raise StoreError("WRONGTYPE Operation against a key holding the wrong kind of value")
        self.in_batch += len(wanted)
        return await super().read_many(wanted)


def engine(
    states: MemoryStates, aggregates: MemoryAggregates, outputs: MemoryOutputs | None = None
) -> Engine:
    return build_engine(
        settings=EngineSettings(),
        topics=TopicSettings(),
        states=states,
        aggregates=aggregates,
        outputs=outputs or MemoryOutputs(),
        dead_letters=MemoryDeadLetters(),
        clock=lambda: NOW,
    )


async def started(eng: Engine, flags: Iterable[str]) -> None:
    for flag in flags:
        start = CommandInput(
            action=CommandAction.START,
            flag=flag,
            command_id=f"c-{flag}",
            actor="ana",
            now=NOW,
            plan=PLAN,
            new_rollout_id=f"r-{flag}",
            new_salt="s",
        )
        await eng.rollouts.apply(flag, start)


@pytest.mark.parametrize(
    ("count", "batches"),
    [(1, [1]), (GATE_BATCH, [GATE_BATCH]), (GATE_BATCH * 2 + 20, [GATE_BATCH, GATE_BATCH, 20])],
)
async def test_a_pass_reads_states_and_aggregates_a_batch_at_a_time(
    count: int, batches: list[int]
) -> None:
    states, aggregates = CountingStates(), CountingAggregates()
    eng = engine(states, aggregates)
    flags = [f"f{i:03d}" for i in range(count)]
    await started(eng, flags)
    loads = states.loads
    aggregates.dirty = set(flags)
    await eng.gates.run_pass(MemoryControl(set(flags)), full=False)
    assert states.batches == batches
    assert aggregates.batches == batches
    # Every state and every read came in a batch; the advances reloaded under the lock.
    assert aggregates.reads == aggregates.in_batch == count
    assert states.loads - loads - states.in_batch == count  # one reload per advance
    assert all(states.docs[f][1].stage == 1 for f in flags)


async def test_a_sweep_reads_no_state_again_and_only_what_changed() -> None:
    states, aggregates = CountingStates(), CountingAggregates()
    eng = engine(states, aggregates)
    await started(eng, ["bad", "quiet"])
    control = MemoryControl({"bad", "quiet"})
    aggregates.dirty = {"bad", "quiet"}
    await eng.gates.run_pass(control, full=False)
    assert states.docs["bad"][1].phase is Phase.ROLLED_BACK
    assert states.docs["quiet"][1].stage == 1
    reads = aggregates.reads
    # A sweep with no news: states from load_all, and "quiet" reuses its read of stage 1.
    await eng.gates.run_pass(control, full=True)
    await eng.gates.run_pass(control, full=True)
    assert states.batches == [2]  # the first pass only
    assert aggregates.batches == [2, 1]  # stage 1 of "quiet" had never been read
    assert aggregates.reads == reads + 1


async def test_a_batch_read_that_fails_leaves_each_flag_to_read_its_own() -> None:
    # Given a batch whose read fails for good, and one flag whose own read does too
    states, aggregates = CountingStates(), CountingAggregates(broken_batch=True)
    outputs = MemoryOutputs()
    eng = engine(states, aggregates, outputs)
    flags = ["bad", "damaged", "fine"]
    await started(eng, flags)
    aggregates.damaged = {"damaged"}
    aggregates.dirty = set(flags)
    # When a pass gates them
    await eng.gates.run_pass(MemoryControl(set(flags)), full=False)
    # Then the others are gated on their own reads, and only the damaged flag is not
    assert aggregates.batches == [3]
    assert aggregates.reads == 3
    assert states.docs["bad"][1].phase is Phase.ROLLED_BACK
    assert states.docs["fine"][1].stage == 1
    assert states.docs["damaged"][1].stage == 0
    alerts = [orjson.loads(v) for t, _, v in outputs.sent if t == "rollout.alerts"]
    failed = [a["flag"] for a in alerts if a["kind"] == "input_failed"]
    assert failed == ["damaged"]


async def test_a_read_for_another_stage_is_not_taken_for_this_one() -> None:
    states, aggregates = CountingStates(), CountingAggregates()
    eng = engine(states, aggregates)
    await started(eng, ["f"])
    stale = FlagAggregates("f", frozenset({99}), ArmAggregate(), ArmAggregate())
    await eng.gates.gate("f", data=stale)
    assert aggregates.reads == 1  # read its own stage
    assert states.docs["f"][1].stage == 1
