"""The engine's own logic against in-memory fakes of its store, aggregates and outputs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
import pytest

from controller.adapters.memory import (
    MemoryAggregates,
    MemoryControl,
    MemoryDeadLetters,
    MemoryOutputs,
    MemoryStates,
)
from controller.core.machine.commands import MAX_CONTROL_BYTES
from controller.core.rollouts import Briefing
from controller.core.rollouts.advice import Advice, AdvisorResult, Opinion, Unavailable
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.rollouts.rollout import CommandInput
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.trust.signing import generate_key
from controller.core.wire import sent_object
from controller.core.wire.messages import CommandAction
from controller.ctl.operate.commands import command_model, signed_model
from controller.daemon.rollouts.engine import Engine, build_engine
from controller.ports import Advisor, DeadLetter, SaveOutcome, StateWrite
from controller.settings import EngineSettings, LlmSettings, TopicSettings

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PLAN = Plan(stages=[Stage(percent=5, min_duration=timedelta(hours=1)), Stage(percent=100)])


class NoDeadLetters:
    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        raise AssertionError(f"unexpected dead letters: {letters}")


class EngineFactory(Protocol):
    def __call__(
        self,
        *,
        states: MemoryStates | None = None,
        aggregates: MemoryAggregates | None = None,
        outputs: MemoryOutputs | None = None,
        advisor: Advisor | None = None,
    ) -> Engine: ...


@pytest.fixture
def make_engine() -> EngineFactory:
    """An engine on in-memory ports at a fixed time; with ``advisor``, in gating mode."""

    def build(
        *,
        states: MemoryStates | None = None,
        aggregates: MemoryAggregates | None = None,
        outputs: MemoryOutputs | None = None,
        advisor: Advisor | None = None,
    ) -> Engine:
        return build_engine(
            settings=EngineSettings(),
            topics=TopicSettings(),
            states=states or MemoryStates(),
            aggregates=aggregates or MemoryAggregates(),
            outputs=outputs or MemoryOutputs(),
            dead_letters=NoDeadLetters(),
            llm=LlmSettings(mode="gating" if advisor else "off"),
            advisor=advisor,
            clock=lambda: NOW,
        )

    return build


def start(flag: str, command_id: str = "c1") -> CommandInput:
    return CommandInput(
        action=CommandAction.START,
        flag=flag,
        command_id=command_id,
        actor="ana",
        now=NOW,
        plan=PLAN,
        new_rollout_id=f"r-{flag}",
        new_salt="s",
    )


async def test_a_command_applies_once_even_when_delivered_twice(
    make_engine: EngineFactory,
) -> None:
    states, outputs = MemoryStates(), MemoryOutputs()
    eng = make_engine(states=states, outputs=outputs)
    await eng.rollouts.apply("f", start("f"))
    published = len(outputs.sent)
    await eng.rollouts.apply("f", start("f"))  # redelivered after a crash
    assert states.docs["f"][0] == 1
    assert len(outputs.sent) == published
    assert {topic for topic, _, _ in outputs.sent} == {"rollout.flag-state", "rollout.decisions"}
    assert states.outbox["f"] == []


async def test_gate_pass_leaves_other_instances_flags_dirty(make_engine: EngineFactory) -> None:
    aggregates = MemoryAggregates()
    eng = make_engine(aggregates=aggregates)
    for flag in ("mine", "theirs"):
        await eng.rollouts.apply(flag, start(flag, f"c-{flag}"))
    aggregates.dirty = {"mine", "theirs"}
    await eng.gates.run_pass(MemoryControl({"mine"}), full=False)
    assert aggregates.dirty == {"theirs"}
    assert aggregates.reads == 1


async def test_timer_sweep_reuses_the_last_read_of_an_unchanged_stage(
    make_engine: EngineFactory,
) -> None:
    states, aggregates = MemoryStates(), MemoryAggregates()
    eng = make_engine(states=states, aggregates=aggregates)
    await eng.rollouts.apply("f", start("f"))
    await eng.gates.gate("f", fresh=True)
    loads = states.loads
    await eng.gates.gate("f", fresh=False)
    await eng.gates.gate("f", fresh=False)
    assert aggregates.reads == 1
    assert states.loads == loads + 2  # one load per holding gate, no reload
    await eng.gates.gate("f", fresh=True)
    assert aggregates.reads == 2


class BusyAggregates(MemoryAggregates):
    """A stage with traffic and nothing wrong: the statistics say advance."""

    async def read(self, flag: str, versions: Iterable[int]) -> FlagAggregates:
        self.reads += 1
        return FlagAggregates(
            flag,
            frozenset(versions),
            ArmAggregate(exposures=5, units=5),
            ArmAggregate(exposures=95, units=95),
        )


@dataclass
class DownAdvisor:
    calls: int = 0

    async def advise(self, briefing: Briefing) -> AdvisorResult:
        self.calls += 1
        return Unavailable("connection refused")


async def test_an_advisor_outage_alerts_once_and_gates_proceed(
    make_engine: EngineFactory,
) -> None:
    ladder = Plan(
        stages=[
            Stage(percent=p, min_duration=timedelta(0), min_units_per_arm=0) for p in (1, 5, 25, 50)
        ]
        + [Stage(percent=100)]
    )
    states, outputs, advisor = MemoryStates(), MemoryOutputs(), DownAdvisor()
    eng = make_engine(states=states, aggregates=BusyAggregates(), outputs=outputs, advisor=advisor)
    start = CommandInput(
        action=CommandAction.START,
        flag="f",
        command_id="c",
        actor="ana",
        now=NOW,
        plan=ladder,
        new_rollout_id="r",
        new_salt="s",
    )
    await eng.rollouts.apply("f", start)
    for _ in range(3):
        await eng.gates.gate("f")
    assert advisor.calls == 3
    assert states.docs["f"][1].stage == 3  # advanced on the statistics each time
    alerts = [orjson.loads(v) for t, _, v in outputs.sent if t == "rollout.alerts"]
    assert [a["kind"] for a in alerts] == ["advisor_unavailable"]
    decisions = [orjson.loads(v) for t, _, v in outputs.sent if t == "rollout.decisions"]
    gated = [d for d in decisions if d["action"] == "advance"]
    assert all(d["evidence"]["advisor"]["status"] == "unavailable" for d in gated)
    assert all(d["evidence"]["advisor"]["cause"] == "connection refused" for d in gated)


@dataclass
class SplitAggregates(MemoryAggregates):
    """Healthy numbers for every flag except ``bad``, whose treatment fails a third of requests."""

    async def read(self, flag: str, versions: Iterable[int]) -> FlagAggregates:
        self.reads += 1
        errors = 300 if flag == "bad" else 10
        return FlagAggregates(
            flag,
            frozenset(versions),
            ArmAggregate(exposures=1000, units=1000, requests=1000, errors=errors),
            ArmAggregate(exposures=1000, units=1000, requests=1000, errors=10),
        )


@dataclass
class SlowAdvisor:
    """Answers `advance` only when the test releases it."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    asked: asyncio.Event = field(default_factory=asyncio.Event)
    calls: int = 0

    async def advise(self, briefing: Briefing) -> AdvisorResult:
        self.calls += 1
        self.asked.set()
        await self.release.wait()
        return Opinion(Advice(action="advance", confidence=0.9, rationale="fine"), "m", 5000.0)


async def test_a_slow_model_never_delays_a_rollback(make_engine: EngineFactory) -> None:
    # Given two flags ready to advance and a model that takes its time
    ladder = Plan(
        stages=[
            Stage(percent=p, min_duration=timedelta(0), min_units_per_arm=0) for p in (50, 100)
        ],
        guardrails=[Guardrail(metric="error_rate")],
    )
    states, outputs, advisor = MemoryStates(), MemoryOutputs(), SlowAdvisor()
    eng = make_engine(states=states, aggregates=SplitAggregates(), outputs=outputs, advisor=advisor)
    for flag in ("slow", "bad"):
        await eng.rollouts.apply(flag, start_input(flag, ladder))
    # When the gate loop runs while the model thinks about "slow"
    control = MemoryControl(mine={"slow", "bad"})
    await eng.gates.run_pass(control, full=True)
    await eng.gates.run_pass(control, full=True)
    await asyncio.wait_for(advisor.asked.wait(), timeout=5)  # the consultation is under way
    # Then "bad" is rolled back at once, and "slow" is asked only once so far
    assert states.docs["bad"][1].phase.value == "rolled_back"
    assert advisor.calls == 1
    assert states.docs["slow"][1].stage == 0
    # And when the model answers, the advance it approved is applied on fresh numbers
    advisor.release.set()
    await asyncio.wait_for(eng.consultations_done(), timeout=5)
    assert states.docs["slow"][1].stage == 1
    decisions = [orjson.loads(v) for t, _, v in outputs.sent if t == "rollout.decisions"]
    done = next(d for d in decisions if d["flag"] == "slow" and d["action"] == "advance")
    assert done["evidence"]["advisor"]["action"] == "advance"


def start_input(flag: str, plan: Plan) -> CommandInput:
    return CommandInput(
        action=CommandAction.START,
        flag=flag,
        command_id=f"c-{flag}",
        actor="ana",
        now=NOW,
        plan=plan,
        new_rollout_id=f"r-{flag}",
        new_salt="s",
    )


# -- the command intake: every command reaches the one writer, refused or not ----------

KEY, PUBLIC = generate_key()


@dataclass
class ControlRecord:
    value: bytes | None
    topic: str = "rollout.commands"
    partition: int = 0
    offset: int = 0
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass
class RevisionStates(MemoryStates):
    """Memory states that keep every write's expected revision."""

    revs: list[int] = field(default_factory=list)

    async def save(self, flag: str, write: StateWrite) -> SaveOutcome:
        self.revs.append(write.rev)
        return await super().save(flag, write)


def intake(states: MemoryStates, outputs: MemoryOutputs, letters: MemoryDeadLetters) -> Engine:
    return build_engine(
        settings=EngineSettings(operator_keys={"ops-1": PUBLIC}),
        topics=TopicSettings(),
        states=states,
        aggregates=MemoryAggregates(),
        outputs=outputs,
        dead_letters=letters,
        clock=lambda: NOW,
    )


def command_record(action: str, flag: str, command_id: str, *, sign: bool = True) -> ControlRecord:
    fields: dict[str, Any] = {"actor": "ana", "key_id": "ops-1", "command_id": command_id}
    fields["ts_ms"] = int(NOW.timestamp() * 1000)
    if action == "start":
        fields["plan"] = Plan(stages=[Stage(percent=5), Stage(percent=100, min_units_per_arm=0)])
    raw = (
        sent_object(signed_model(action, flag, private_key=KEY, **fields))
        if sign
        else sent_object(command_model(action, flag, **fields))
    )
    return ControlRecord(orjson.dumps(raw))


def decisions(outputs: MemoryOutputs) -> list[tuple[str, str, str, str]]:
    sent = [orjson.loads(v) for t, _, v in outputs.sent if t == "rollout.decisions"]
    return [(d["flag"], d["action"], d["outcome"], d["reason"]) for d in sent]


async def test_a_refused_command_is_published_and_changes_nothing() -> None:
    states, outputs, letters = RevisionStates(), MemoryOutputs(), MemoryDeadLetters()
    eng = intake(states, outputs, letters)
    await eng.commands.handle(command_record("start", "f", "c1", sign=False))
    assert decisions(outputs) == [("f", "start", "rejected", "unsigned command")]
    assert "f" not in states.docs
    assert states.commands == set()  # a refusal does not use up the command's id
    assert states.revs == [0]  # saved at the flag's revision, like any input
    assert states.outbox["f"] == []  # and published
    await eng.commands.handle(command_record("start", "f", "c1"))  # the same id, signed
    assert states.docs["f"][1].phase.value == "running"
    assert letters.letters == []


REPLAY_REFUSED = [("f", "pause", "rejected", "replayed command id")]


@pytest.mark.parametrize(
    ("read_again", "published"),
    [
        # A new owner after a rebalance, or a paused owner resuming, reads the record
        # its predecessor applied: it was decided then, and is no one's replay.
        pytest.param({}, [], id="the same record, read again"),
        pytest.param({"offset": 2}, REPLAY_REFUSED, id="sent again, later on the topic"),
        pytest.param({"partition": 1}, REPLAY_REFUSED, id="sent again, on another partition"),
        pytest.param({"topic": "other"}, REPLAY_REFUSED, id="sent again, on another topic"),
    ],
)
async def test_a_command_applied_before_is_refused_as_a_replay_only_when_sent_again(
    read_again: dict[str, Any], published: list[tuple[str, str, str, str]]
) -> None:
    states, outputs, letters = RevisionStates(), MemoryOutputs(), MemoryDeadLetters()
    eng = intake(states, outputs, letters)
    await eng.commands.handle(command_record("start", "f", "c1"))
    pause = replace(command_record("pause", "f", "c2"), offset=1)
    await eng.commands.handle(pause)
    rev, paused = states.docs["f"]
    await eng.commands.handle(replace(pause, **read_again))
    assert states.docs["f"] == (rev, paused)
    assert decisions(outputs)[1:] == [("f", "pause", "applied", "operator pause"), *published]
    # A refusal is saved expecting the current revision, not "any"; a redelivery saves nothing
    assert states.revs[2:] == [rev] * len(published)


async def test_records_that_break_the_contract_are_dead_lettered() -> None:
    states, outputs, letters = MemoryStates(), MemoryOutputs(), MemoryDeadLetters()
    eng = intake(states, outputs, letters)
    await eng.commands.handle(ControlRecord(b"x" * (MAX_CONTROL_BYTES + 1)))
    await eng.commands.handle(ControlRecord(b"[]"))
    assert [letter.reason for letter in letters.letters] == ["oversize", "schema_violation"]
    assert outputs.sent == []
