"""Every flag's current state published again: through the outbox, one flag never stopping others.

In-memory ports with fault injection: a store that conflicts once (another
writer saved meanwhile), a flag whose state cannot be read, and a store that
refuses to list the flags.
"""

from __future__ import annotations

import orjson
import pytest

from controller.adapters.memory import MemoryAggregates, MemoryOutputs, MemoryStates
from controller.core.common import StoreError
from controller.core.rollouts.rollout import CommandInput
from controller.core.wire.messages import CommandAction
from controller.daemon.rollouts.engine import Engine, build_engine
from controller.ports import Loaded, SaveOutcome, StateWrite
from controller.settings import EngineSettings, TopicSettings
from tests.unit.daemon.rollouts.test_engine import NOW, NoDeadLetters, start

FLAG_STATE = "rollout.flag-state"


class FaultyStates(MemoryStates):
    """Conflicts once per flag in ``conflicting``; cannot read ``unreadable``; cannot list."""

    def __init__(self) -> None:
        super().__init__()
        self.conflicting: set[str] = set()
        self.unreadable: set[str] = set()
        self.unlisted = False

    async def load(self, flag: str) -> Loaded:
        if flag in self.unreadable:
            raise StoreError(f"{flag}: the stored state is unreadable")
        return await super().load(flag)

    async def save(self, flag: str, write: StateWrite) -> SaveOutcome:
        if flag in self.conflicting:
            self.conflicting.discard(flag)
            return SaveOutcome.CONFLICT
        return await super().save(flag, write)

    async def flags(self) -> set[str]:
        if self.unlisted:
            raise StoreError("the store refuses to list the flags")
        return await super().flags()


def _engine(states: MemoryStates, outputs: MemoryOutputs) -> Engine:
    return build_engine(
        settings=EngineSettings(),
        topics=TopicSettings(),
        states=states,
        aggregates=MemoryAggregates(),
        outputs=outputs,
        dead_letters=NoDeadLetters(),
        clock=lambda: NOW,
    )


def _promote(flag: str) -> CommandInput:
    return CommandInput(
        action=CommandAction.PROMOTE, flag=flag, command_id=f"p-{flag}", actor="ana", now=NOW
    )


async def _three_flags(states: FaultyStates, outputs: MemoryOutputs) -> Engine:
    engine = _engine(states, outputs)
    for flag in ("a", "b", "c"):
        await engine.rollouts.apply(flag, start(flag, f"c-{flag}"))
    await engine.rollouts.apply("b", _promote("b"))
    outputs.sent.clear()
    return engine


@pytest.mark.parametrize(
    ("conflicting", "unreadable", "published"),
    [
        (set(), set(), ["a", "b", "c"]),
        ({"a", "c"}, set(), ["a", "b", "c"]),  # saved again at the revision read again
        (set(), {"b"}, ["a", "c"]),  # the others still go out
    ],
)
async def test_every_flag_state_goes_out_again_at_its_current_version(
    conflicting: set[str], unreadable: set[str], published: list[str]
) -> None:
    states, outputs = FaultyStates(), MemoryOutputs()
    engine = await _three_flags(states, outputs)
    states.conflicting, states.unreadable = set(conflicting), set(unreadable)
    assert await engine.republisher.republish_all("test") == len(published)
    sent = [orjson.loads(v) for t, _, v in outputs.sent if t == FLAG_STATE]
    assert sorted(s["flag"] for s in sent) == published
    for state in sent:
        rollout = (await MemoryStates.load(states, state["flag"])).rollout
        assert rollout is not None
        assert (state["version"], state["percent"]) == (rollout.flag_version, rollout.percent)
    assert all(not box for box in states.outbox.values())  # drained: nothing left behind
    assert {t for t, _, _ in outputs.sent} <= {FLAG_STATE}  # no decision, no alert


async def test_a_store_that_cannot_list_the_flags_republishes_nothing_and_raises_nothing() -> None:
    states, outputs = FaultyStates(), MemoryOutputs()
    engine = await _three_flags(states, outputs)
    states.unlisted = True
    assert await engine.republisher.republish_all("test") == 0
    assert outputs.sent == []
