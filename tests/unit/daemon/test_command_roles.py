"""The command intake under roles per key: each command acts in its environment, under the
flag's key there, and only where the key's roles allow; a refusal is a rejected decision."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.adapters.memory import (
    MemoryAggregates,
    MemoryDeadLetters,
    MemoryOutputs,
    MemoryStates,
)
from controller.core.release import Environments, Permission, Role, RoleBook
from controller.core.rollouts import ApprovalGate, ApprovalRule
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from controller.core.rollouts.policy import PauseReason
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.trust.signing import generate_key
from controller.core.wire import sent_object
from controller.ctl.operate.commands import signed_model
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

    def __init__(
        self,
        book: RoleBook = BOOK,
        approvers: dict[str, tuple[Ed25519PrivateKey, str]] | None = None,
    ) -> None:
        KEYS.update(approvers or {})
        records = {
            **RECORDS,
            **{
                k: {"public_key": pub, "roles": ["approver"]}
                for k, (_, pub) in (approvers or {}).items()
            },
        }
        self.states, self.outputs = MemoryStates(), MemoryOutputs()
        self.engine: Engine = build_engine(
            settings=EngineSettings(
                operator_keys=records,
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
        self.last = b""

    async def send(self, key_id: str, action: str, environment: str | None) -> dict[str, Any]:
        """The decision on ``key_id``'s ``action`` in ``environment``."""
        self.offset += 1
        command = sent_object(
            signed_model(
                action,
                "checkout",
                private_key=KEYS[key_id][0],
                key_id=key_id,
                actor=key_id,
                ts_ms=int(NOW.timestamp() * 1000),
                plan=PLAN if action == "start" else None,
                environment=environment,
            )
        )
        self.last = orjson.dumps(command)
        await self.engine.commands.handle(ControlRecord(self.last, offset=self.offset))
        return next(d for d in self.decisions() if d["command_id"] == command["id"])

    def decisions(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for t, _, v in self.outputs.sent if t == "rollout.decisions"]


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


# -- approvals by several people ---------------------------------------------------------

APPROVERS = RoleBook(
    roles=(
        *BOOK.roles,
        Role(name="approver", actions=(Permission.APPROVE,), environments=("*",)),
    )
)


def awaiting_two_approvers(world: World) -> None:
    gate = ApprovalGate(needs=(ApprovalRule(role="approver", count=2),))
    plan = Plan(stages=[Stage(percent=5, approval=gate), Stage(percent=100, min_units_per_arm=0)])
    world.states.docs["checkout"] = (
        1,
        Rollout(
            flag="checkout",
            rollout_id="r1",
            plan=plan,
            phase=Phase.PAUSED,
            stage=0,
            stage_started_at=NOW,
            salt="s",
            flag_version=1,
            stage_versions={0: [1]},
            pause_reason=PauseReason.AWAITING_APPROVAL,
            started_at=NOW,
            updated_at=NOW,
        ),
    )


async def test_approvals_count_once_per_key_and_a_replay_counts_nothing() -> None:
    world = World(APPROVERS, {"ana": generate_key(), "bo": generate_key()})
    awaiting_two_approvers(world)
    first = await world.send("ana", "approve", None)
    assert first["outcome"] == "applied"
    assert "1 more from approver" in first["reason"]
    # The same signed command, sent again, is a replay: it counts nothing
    await world.engine.commands.handle(ControlRecord(world.last, offset=world.offset + 100))
    replayed = [d for d in world.decisions() if d["command_id"] == first["command_id"]]
    assert [d["reason"] for d in replayed][1:] == ["replayed command id"]
    assert len(world.states.docs["checkout"][1].approvals.approvals) == 1
    # The dev key, which may not approve anywhere here, is refused
    assert (await world.send("dev-1", "approve", None))["outcome"] == "rejected"
    second = await world.send("bo", "approve", None)
    assert second["reason"].endswith("every approval given")
    assert world.states.docs["checkout"][1].stage == 1


async def test_revoking_a_key_removes_its_pending_approvals() -> None:
    world = World(APPROVERS, {"ana": generate_key()})
    awaiting_two_approvers(world)
    await world.send("ana", "approve", None)
    assert len(world.states.docs["checkout"][1].approvals.approvals) == 1
    await world.engine.keys_revoked(("ana",))
    assert not world.states.docs["checkout"][1].approvals.approvals
    said = world.decisions()[-1]
    assert (said["action"], said["reason"]) == (
        "revoke",
        "key ana revoked: its approvals count no more",
    )
