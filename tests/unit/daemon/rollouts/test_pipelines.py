"""Release pipelines on in-memory ports: each completion starts the next environment, a stop
stops the run, a restart decides nothing again, and bad input is refused with its reason."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.adapters.memory import (
    MemoryAggregates,
    MemoryDeadLetters,
    MemoryOutputs,
    MemoryRuns,
    MemoryStates,
)
from controller.core.release import RunPhase, StepStatus, rollout_id_of
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.rollout import Phase
from controller.core.trust import signing
from controller.core.trust.signing import generate_key
from controller.core.wire import sent_object
from controller.ctl.operate.commands import signed_model
from controller.daemon.rollouts.engine import Engine, build_engine
from controller.settings import EngineSettings, TopicSettings

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ENVIRONMENTS = {"names": ["dev", "staging", "production"], "default": "production"}
ROLES = {
    "roles": [
        {"name": "dev", "actions": ["start", "promote", "kill"], "environments": ["dev"]},
        {"name": "approver", "actions": ["approve"], "environments": ["*"]},
    ]
}
PLAN = {"stages": [{"percent": 5, "min_duration": "1h"}, {"percent": 100, "min_units_per_arm": 0}]}
PIPELINE: dict[str, Any] = {
    "name": "checkout-release",
    "plans": {"standard": PLAN},
    "plan": "standard",
    "steps": [{"environment": "dev"}, {"environment": "staging"}, {"environment": "production"}],
}
GATED = {
    **PIPELINE,
    "steps": [
        {"environment": "dev"},
        {"environment": "staging", "soak": "1h"},
        {
            "environment": "production",
            "approval": {"needs": [{"role": "approver", "count": 2}]},
        },
    ],
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
    """An engine with release pipelines on in-memory ports, on a clock the test turns."""

    def __init__(self) -> None:
        self.now = NOW
        self.keys: dict[str, Ed25519PrivateKey] = {}
        records: dict[str, str | dict[str, Any]] = {}
        for name, roles in (
            ("ops", None),
            ("dev-1", ["dev"]),
            ("ana", ["approver"]),
            ("bo", ["approver"]),
        ):
            private, public = generate_key()
            self.keys[name] = private
            records[name] = public if roles is None else {"public_key": public, "roles": roles}
        self.states, self.runs, self.outputs = MemoryStates(), MemoryRuns(), MemoryOutputs()
        self.engine: Engine = build_engine(
            settings=EngineSettings(operator_keys=records, roles=ROLES, environments=ENVIRONMENTS),
            topics=TopicSettings(),
            states=self.states,
            aggregates=MemoryAggregates(),
            outputs=self.outputs,
            dead_letters=MemoryDeadLetters(),
            clock=lambda: self.now,
            pipeline_runs=self.runs,
        )
        self.offset = 0

    async def send(self, command: dict[str, Any]) -> None:
        self.offset += 1
        await self.engine.commands.handle(ControlRecord(orjson.dumps(command), offset=self.offset))

    def signed(self, key_id: str, body: dict[str, Any]) -> dict[str, Any]:
        command = {
            "v": 1,
            "id": f"{key_id}-{self.offset}",
            "ts": int(self.now.timestamp() * 1000),
            "actor": key_id,
            "key_id": key_id,
            **body,
        }
        command["sig"] = signing.sign(command, self.keys[key_id])
        return command

    async def start(self, pipeline: dict[str, Any], key_id: str = "ops") -> str:
        command = self.signed(
            key_id,
            {"type": "pipeline", "action": "start", "flag": "checkout", "pipeline": pipeline},
        )
        await self.send(command)
        return str(command["id"])

    async def start_cart(self, environment: str) -> None:
        """Flag ``cart`` rolling out in ``environment``, started by hand."""
        command = signed_model("start", "cart", private_key=self.keys["ops"], key_id="ops",
                               actor="ops", ts_ms=int(self.now.timestamp() * 1000),
                               environment=environment, plan=Plan.model_validate(PLAN))  # fmt: skip
        await self.send(sent_object(command))

    async def approve(self, key_id: str, environment: str) -> dict[str, Any]:
        command = sent_object(
            signed_model(
                "approve",
                "checkout",
                private_key=self.keys[key_id],
                key_id=key_id,
                actor=key_id,
                ts_ms=int(self.now.timestamp() * 1000),
                environment=environment,
            )
        )
        await self.send(command)
        return next(d for d in self.decisions() if d.get("command_id") == command["id"])

    def decisions(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for t, _, v in self.outputs.sent if t == "rollout.decisions"]

    def pipeline_decisions(self) -> list[tuple[str, str, str | None]]:
        return [
            (d["action"], d["outcome"], d["evidence"].get("environment"))
            for d in self.decisions()
            if d["kind"] == "pipeline"
        ]

    def end(self, key: str, phase: Phase) -> None:
        """The environment's rollout ends as its own machine would have ended it."""
        rev, rollout = self.states.docs[key]
        self.states.docs[key] = (rev + 1, rollout.model_copy(update={"phase": phase}))

    async def reconcile(self, run_id: str) -> None:
        assert self.engine.pipelines is not None
        await self.engine.pipelines.reconcile(run_id)


async def test_each_completion_starts_the_next_environment_until_production_completes() -> None:
    world = World()
    run_id = await world.start(PIPELINE)
    # The first environment starts with the pipeline, under its key there
    assert set(world.states.docs) == {"checkout@dev"}
    assert world.states.docs["checkout@dev"][1].rollout_id == rollout_id_of(run_id, "dev")
    world.end("checkout@dev", Phase.COMPLETED)
    await world.reconcile(run_id)
    assert set(world.states.docs) == {"checkout@dev", "checkout@staging"}
    world.end("checkout@staging", Phase.COMPLETED)
    await world.reconcile(run_id)
    # production is the default environment: the flag's own key
    assert world.states.docs["checkout"][1].rollout_id == rollout_id_of(run_id, "production")
    world.end("checkout", Phase.COMPLETED)
    await world.reconcile(run_id)
    assert world.pipeline_decisions() == [
        ("pipeline_start", "applied", "dev"),
        ("pipeline_step", "applied", "dev"),
        ("pipeline_start", "applied", "staging"),
        ("pipeline_step", "applied", "staging"),
        ("pipeline_start", "applied", "production"),
        ("pipeline_complete", "applied", "production"),
    ]
    assert world.runs.docs[run_id][1].phase is RunPhase.COMPLETED
    assert await world.runs.running() == set()


async def test_a_rollback_in_staging_stops_the_run_and_production_never_starts() -> None:
    world = World()
    run_id = await world.start(PIPELINE)
    world.end("checkout@dev", Phase.COMPLETED)
    await world.reconcile(run_id)
    world.end("checkout@staging", Phase.ROLLED_BACK)
    await world.reconcile(run_id)
    # A restart reconciles again: it decides nothing new
    published = len(world.outputs.sent)
    await world.reconcile(run_id)
    assert len(world.outputs.sent) == published
    stop = [d for d in world.decisions() if d["action"] == "pipeline_stop"]
    assert len(stop) == 1
    assert stop[0]["reason"] == (
        "staging rolled back: the pipeline stops here; production will not start"
    )
    alerts = [orjson.loads(v) for t, _, v in world.outputs.sent if t == "rollout.alerts"]
    assert [a["kind"] for a in alerts] == ["pipeline_stopped"]
    assert "checkout" not in world.states.docs
    assert world.runs.docs[run_id][1].phase is RunPhase.STOPPED


async def test_a_crash_between_saving_the_run_and_starting_the_rollout_starts_it_once() -> None:
    world = World()
    run_id = await world.start(PIPELINE)
    world.end("checkout@dev", Phase.COMPLETED)
    await world.reconcile(run_id)
    # As if the controller had stopped right after saving "staging starts": its rollout,
    # and the id of the command that started it, were never saved
    del world.states.docs["checkout@staging"]
    world.states.commands.discard(
        hashlib.sha256(f"{run_id}/staging/start".encode()).hexdigest()[:32]
    )
    await world.reconcile(run_id)
    await world.reconcile(run_id)
    assert world.states.docs["checkout@staging"][1].rollout_id == rollout_id_of(run_id, "staging")
    starts = [
        d for d in world.decisions() if d["action"] == "start" and d["flag"] == "checkout@staging"
    ]
    assert len(starts) == 2  # the first start, and the one after the "crash"; never a third
    assert [s[0] for s in world.pipeline_decisions()].count("pipeline_start") == 2


async def test_production_waits_for_its_soak_and_two_distinct_approvers() -> None:
    world = World()
    run_id = await world.start(GATED)
    world.end("checkout@dev", Phase.COMPLETED)
    await world.reconcile(run_id)
    assert "checkout@staging" not in world.states.docs  # the soak holds it
    world.now += timedelta(hours=1)
    await world.reconcile(run_id)
    world.end("checkout@staging", Phase.COMPLETED)
    await world.reconcile(run_id)
    waiting = world.decisions()[-1]
    assert (waiting["action"], waiting["outcome"]) == ("pipeline_gate", "held")
    assert waiting["reason"] == "production waits for: approvals: 2 more from approver"
    # One approval does not move it, nor a second from the same key
    first = await world.approve("ana", "production")
    assert first["reason"] == "ana (key ana, approver) approved production: 1 more from approver"
    again = await world.approve("ana", "production")
    assert again["outcome"] == "rejected"
    assert "a key counts once" in again["reason"]
    assert "checkout" not in world.states.docs
    # A dev key may not approve production at all
    refused = await world.approve("dev-1", "production")
    assert refused["outcome"] == "rejected"
    assert "may not approve in production" in refused["reason"]
    # A second key's approval starts production, and the audit names both
    second = await world.approve("bo", "production")
    assert second["outcome"] == "applied"
    started = [d for d in world.decisions() if d["kind"] == "pipeline"][-1]
    assert (started["action"], started["evidence"]["environment"]) == (
        "pipeline_start",
        "production",
    )
    assert [a["key_id"] for a in started["evidence"]["approvals"]] == ["ana", "bo"]
    assert world.states.docs["checkout"][1].rollout_id == rollout_id_of(run_id, "production")
    # An approval for a step that has started is refused with the reason
    late = await world.approve("ana", "production")
    assert late["outcome"] == "rejected"
    view = await world.engine.pipelines.status("checkout") if world.engine.pipelines else None
    assert view is not None
    assert [e.status for e in view.environments] == ["completed", "completed", "running"]


BAD: dict[str, tuple[dict[str, Any], str, str]] = {
    # case: (pipeline, key, the reason contains)
    "an unknown environment": (
        {**PIPELINE, "steps": [{"environment": "dev"}, {"environment": "qa"}]},
        "ops",
        "steps.1.environment: unknown environment 'qa' (this controller serves dev, staging, "
        "production)",
    ),
    "a cycle": (
        {
            **PIPELINE,
            "steps": [{"environment": "dev"}, {"environment": "staging"}, {"environment": "dev"}],
        },
        "ops",
        "steps.2.environment: 'dev' already comes at steps.0;"
        " a pipeline visits each environment once",
    ),
    "an override for a missing environment": (
        {
            **PIPELINE,
            "overrides": {"staging": {"stages": [{"percent": 100}]}},
            "steps": [{"environment": "dev"}],
        },
        "ops",
        "overrides.staging: environment 'staging' is not in the pipeline (dev)",
    ),
    "a role no key can hold": (
        {
            **PIPELINE,
            "steps": [
                {"environment": "dev"},
                {"environment": "production", "approval": {"needs": [{"role": "cto"}]}},
            ],
        },
        "ops",
        "steps.1.approval.needs.0.role: unknown role 'cto'",
    ),
    "a dev key starting a pipeline that reaches production": (
        PIPELINE,
        "dev-1",
        "a pipeline starts rollouts in staging: key dev-1 (roles: dev) may not start in staging",
    ),
}


@pytest.mark.parametrize(("pipeline", "key_id", "reason"), BAD.values(), ids=BAD)
async def test_bad_input_is_refused_with_the_field_or_the_reason(
    pipeline: dict[str, Any], key_id: str, reason: str
) -> None:
    world = World()
    command_id = await world.start(pipeline, key_id)
    refused = next(d for d in world.decisions() if d.get("command_id") == command_id)
    assert (refused["kind"], refused["outcome"]) == ("pipeline", "rejected")
    assert reason in refused["reason"]
    assert world.states.docs == {}
    assert world.runs.docs == {}


async def test_an_approval_for_a_finished_step_is_refused_with_the_reason() -> None:
    world = World()
    run_id = await world.start(GATED)
    world.end("checkout@dev", Phase.KILLED)
    await world.reconcile(run_id)
    late = await world.approve("ana", "production")
    assert late["outcome"] == "rejected"
    assert late["reason"] == "the pipeline stopped at dev: no step awaits an approval"
    assert world.runs.docs[run_id][1].steps[2].status is StepStatus.PENDING


REQUIRING = {
    **PIPELINE,
    "plans": {"standard": {**PLAN, "requires": [{"flag": "cart", "variants": ["treatment"]}]}},
}


async def test_a_pipeline_whose_steps_require_an_unknown_flag_is_refused_naming_where() -> None:
    world = World()
    for environment in ("dev", "staging"):  # production has no cart
        await world.start_cart(environment)
    command_id = await world.start(REQUIRING)
    (refused,) = [d for d in world.decisions() if d.get("command_id") == command_id]
    assert refused["outcome"] == "rejected"
    assert refused["reason"].startswith("production: invalid plan: requires: ")
    assert "cart" in refused["reason"]
    assert not any(key.startswith("checkout") for key in world.states.docs)


async def test_a_step_whose_prerequisite_went_away_is_refused_when_it_starts() -> None:
    # Given every environment's cart rolling out when the pipeline starts
    world = World()
    for environment in ("dev", "staging", "production"):
        await world.start_cart(environment)
    run_id = await world.start(REQUIRING)
    assert "checkout@dev" in world.states.docs
    # When staging's cart is gone by the time dev completes
    del world.states.docs["cart@staging"]
    world.end("checkout@dev", Phase.COMPLETED)
    await world.reconcile(run_id)
    # Then staging's start is refused as a person's would be, and the run stops saying why
    assert "checkout@staging" not in world.states.docs
    refused = [d for d in world.decisions() if d["flag"] == "checkout@staging"]
    assert [(d["action"], d["outcome"]) for d in refused] == [("start", "rejected")]
    assert "invalid plan: requires: " in refused[0]["reason"]
    (stop,) = [d for d in world.decisions() if d["action"] == "pipeline_stop"]
    assert "its rollout did not start: invalid plan: requires: " in stop["reason"]
    assert world.runs.docs[run_id][1].phase is RunPhase.STOPPED
    published = len(world.outputs.sent)
    await world.reconcile(run_id)  # a restart decides nothing again
    assert len(world.outputs.sent) == published
