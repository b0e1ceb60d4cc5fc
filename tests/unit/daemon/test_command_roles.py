"""The command intake under roles per key: each command acts in its environment, under the
flag's key there, and only where the key's roles allow; a refusal is a rejected decision."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from controller.adapters.memory import (
    MemoryAggregates,
    MemoryDeadLetters,
    MemoryOutputs,
    MemoryStates,
)
from controller.core.release import Environments, Permission, Role, RoleBook
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from controller.core.trust.signing import generate_key
from controller.ctl.operate.commands import signed_command
from controller.daemon.rollouts.engine import Engine, build_engine
from controller.settings import EngineSettings, TopicSettings

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PLAN = Plan(stages=[Stage(percent=5), Stage(percent=100, min_units_per_arm=0)])
ENVIRONMENTS = Environments(names=("dev", "staging", "production"), default="production")
BOOK = RoleBook(
    roles=(
        Role(name="dev", actions=tuple(Permission), environments=("dev",)),
        Role(name="on-call", actions=(Permission.PAUSE,), environments=("dev",), on_call=True),
    )
)
KEYS = {name: generate_key() for name in ("ops", "dev-1", "pager")}
RECORDS: dict[str, str | dict[str, Any]] = {
    "ops": KEYS["ops"][1],  # today's form: every action everywhere
    "dev-1": {"public_key": KEYS["dev-1"][1], "roles": ["dev"]},
    "pager": {"public_key": KEYS["pager"][1], "roles": ["on-call"]},
}


@dataclass
class ControlRecord:
    value: bytes | None
    topic: str = "rollout.commands"
    partition: int = 0
    offset: int = 0
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()


class World:
    """An engine on in-memory ports with keys that hold roles."""

    def __init__(self, book: RoleBook = BOOK) -> None:
        self.states, self.outputs = MemoryStates(), MemoryOutputs()
        self.engine: Engine = build_engine(
            settings=EngineSettings(
                operator_keys=RECORDS,
                roles=book.model_dump(mode="json"),
                environments=ENVIRONMENTS.model_dump(mode="json"),
            ),
            topics=TopicSettings(),
            states=self.states,
            aggregates=MemoryAggregates(),
            outputs=self.outputs,
            dead_letters=MemoryDeadLetters(),
            clock=lambda: NOW,
        )
        self.offset = 0

    async def send(self, key_id: str, action: str, environment: str | None) -> dict[str, Any]:
        """The decision on ``key_id``'s ``action`` in ``environment``."""
        self.offset += 1
        command = signed_command(
            action,
            "checkout",
            private_key=KEYS[key_id][0],
            key_id=key_id,
            actor=key_id,
            ts_ms=int(NOW.timestamp() * 1000),
            plan=PLAN if action == "start" else None,
            environment=environment,
        )
        await self.engine.commands.handle(ControlRecord(orjson.dumps(command), offset=self.offset))
        sent = [orjson.loads(v) for t, _, v in self.outputs.sent if t == "rollout.decisions"]
        decision: dict[str, Any] = next(d for d in sent if d["command_id"] == command["id"])
        return decision


@pytest.mark.parametrize(
    ("environment", "key"),
    [
        (None, "checkout"),  # the default environment keeps today's key
        ("production", "checkout"),  # named, it is still the default
        ("dev", "checkout@dev"),
        ("staging", "checkout@staging"),
    ],
)
async def test_a_command_acts_on_the_flag_in_its_environment(
    environment: str | None, key: str
) -> None:
    world = World()
    decided = await world.send("ops", "start", environment)
    assert (decided["flag"], decided["outcome"]) == (key, "applied")
    assert set(world.states.docs) == {key}
    assert world.states.docs[key][1].flag == key


CASES: dict[str, tuple[str, str, str | None, str, str]] = {
    # case: (key, action, environment, outcome, reason contains)
    "a dev key starts in dev": ("dev-1", "start", "dev", "applied", ""),
    "a dev key cannot start production": (
        "dev-1",
        "start",
        None,
        "rejected",
        "key dev-1 (roles: dev) may not start in production: it may only in dev",
    ),
    "a dev key cannot kill staging": (
        "dev-1",
        "kill",
        "staging",
        "rejected",
        "may not kill in staging",
    ),
    "an on-call key kills production": ("pager", "kill", None, "applied", ""),
    "an on-call key may not start dev": ("pager", "start", "dev", "rejected", "may not start"),
    "a key with no roles named starts anywhere": ("ops", "start", "staging", "applied", ""),
    "an unknown environment is refused, naming it": (
        "ops",
        "start",
        "qa",
        "rejected",
        "environment: unknown environment 'qa' (this controller serves dev, staging, production)",
    ),
}


@pytest.mark.parametrize(
    ("key_id", "action", "environment", "outcome", "reason"), CASES.values(), ids=CASES
)
async def test_the_key_roles_decide_where_it_may_act(
    key_id: str, action: str, environment: str | None, outcome: str, reason: str
) -> None:
    world = World()
    if action != "start":
        await world.send("ops", "start", environment)
    decided = await world.send(key_id, action, environment)
    assert decided["outcome"] == outcome
    assert reason in decided["reason"]
    if outcome == "rejected" and action == "start":
        assert world.states.docs == {}  # nothing started anywhere


async def test_without_the_on_call_rule_an_on_call_key_kills_only_where_its_roles_say() -> None:
    world = World(BOOK.model_copy(update={"on_call_kills_anywhere": False}))
    await world.send("ops", "start", None)
    decided = await world.send("pager", "kill", None)
    assert (decided["outcome"], decided["flag"]) == ("rejected", "checkout")
    assert "may not kill in production: it may nowhere" in decided["reason"]
    assert world.states.docs["checkout"][1].phase.value == "running"
