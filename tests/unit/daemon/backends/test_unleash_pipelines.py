"""Pipelines served by Unleash: each step in an Unleash environment the server has, checked
against its environment list when the pipeline starts; a step it lacks, or no answer, refuses."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from controller.adapters.memory import (
    MemoryAggregates,
    MemoryDeadLetters,
    MemoryOutputs,
    MemoryRuns,
    MemoryStates,
)
from controller.adapters.unleash.answers import BackendUnavailable
from controller.core.trust import signing
from controller.core.trust.signing import generate_key
from controller.daemon.backends import KnownEnvironments
from controller.daemon.rollouts import pipelines
from controller.daemon.rollouts.engine import build_engine
from controller.settings import EngineSettings, TopicSettings
from tests.unit.daemon.rollouts.test_pipelines import ControlRecord

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SERVED = {"names": ["development", "staging", "production"], "default": "production"}
OPEN_SOURCE = frozenset({"development", "production"})
"""What open-source unleash-server has (its ``default`` is disabled)."""
OWN = {"stages": [{"percent": 5, "min_duration": "1h"}, {"percent": 100, "min_units_per_arm": 0}]}
ON_UNLEASH = {**OWN, "backend": {"unleash": {"feature": "checkout"}}}


def pipeline(*steps: tuple[str, str]) -> dict[str, Any]:
    """Steps of (environment, plan): ``own`` (the controller's flag states) or ``unleash``."""
    return {
        "name": "release",
        "plans": {"own": OWN, "unleash": ON_UNLEASH},
        "steps": [{"environment": e, "plan": p} for e, p in steps],
    }


class World:
    """An engine whose Unleash has ``environments`` (or is down), on in-memory ports."""

    def __init__(self, environments: frozenset[str] = OPEN_SOURCE) -> None:
        self.environments, self.down, self.reads, self.sent = environments, False, 0, 0
        self.hangs = False
        self.key, public = generate_key()
        self.states, self.runs, self.outputs = MemoryStates(), MemoryRuns(), MemoryOutputs()
        self.engine = build_engine(
            settings=EngineSettings(operator_keys={"ops": public}, environments=SERVED),
            topics=TopicSettings(),
            states=self.states,
            aggregates=MemoryAggregates(),
            outputs=self.outputs,
            dead_letters=MemoryDeadLetters(),
            clock=lambda: NOW,
            backends=frozenset({"unleash"}),
            pipeline_runs=self.runs,
            unleash_envs=KnownEnvironments(self._read),
        )

    async def _read(self) -> frozenset[str]:
        self.reads += 1
        if self.hangs:
            await asyncio.Event().wait()
        if self.down:
            raise BackendUnavailable("Unleash unreachable: ConnectError: connection refused")
        return self.environments

    async def start(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send the pipeline; the decision it got."""
        self.sent += 1
        command: dict[str, Any] = {
            "v": 1,
            "id": f"pipeline-{self.sent}",
            "ts": int(NOW.timestamp() * 1000),
            "actor": "ops",
            "key_id": "ops",
            "type": "pipeline",
            "action": "start",
            "flag": "checkout",
            "pipeline": body,
        }
        command["sig"] = signing.sign(command, self.key)
        await self.engine.commands.handle(ControlRecord(orjson.dumps(command), offset=self.sent))
        decisions = [orjson.loads(v) for t, _, v in self.outputs.sent if t == "rollout.decisions"]
        return next(d for d in decisions if d.get("command_id") == command["id"])


REFUSED = {
    "staging on Unleash, which open-source Unleash lacks": (
        pipeline(("staging", "unleash"), ("production", "unleash")),
        "invalid pipeline: steps.0.environment: Unleash has no environment 'staging'"
        " (it has development, production)",
    ),
    "its disabled default environment": (
        {**pipeline(("staging", "own"), ("production", "unleash")), "plans": {
            "own": OWN,
            "unleash": {**OWN, "backend": {"unleash": {"feature": "c", "environment": "default"}}},
        }},
        "invalid pipeline: steps.1.environment: Unleash has no environment 'default'"
        " (it has development, production)",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("body", "reason"), REFUSED.values(), ids=REFUSED)
async def test_a_step_in_an_environment_unleash_lacks_is_refused_naming_it(
    body: dict[str, Any], reason: str
) -> None:
    world = World()
    refused = await world.start(body)
    assert (refused["kind"], refused["outcome"], refused["reason"]) == (
        "pipeline",
        "rejected",
        reason,
    )
    assert (world.states.docs, world.runs.docs) == ({}, {})


async def test_development_then_production_on_unleash_starts_development_there() -> None:
    world = World()
    started = await world.start(pipeline(("development", "unleash"), ("production", "unleash")))
    assert (started["action"], started["outcome"]) == ("pipeline_start", "applied")
    rollout = world.states.docs["checkout@development"][1]
    assert rollout.plan.unleash is not None
    assert rollout.plan.unleash.environment == "development"


async def test_staging_on_the_controller_s_flag_states_and_production_on_unleash_mix() -> None:
    # Given Unleash without staging: the controller serves staging itself
    world = World()
    started = await world.start(pipeline(("staging", "own"), ("production", "unleash")))
    assert (started["action"], started["outcome"]) == ("pipeline_start", "applied")
    staging = world.states.docs["checkout@staging"][1]
    assert staging.plan.unleash is None
    assert world.reads == 1  # production's step is on Unleash: its environment was checked


async def test_unleash_not_answering_refuses_a_pipeline_on_it_rather_than_start_blind() -> None:
    world = World()
    world.down = True
    refused = await world.start(pipeline(("development", "unleash"), ("production", "unleash")))
    assert refused["outcome"] == "rejected"
    assert refused["reason"].startswith(
        "Unleash's environments could not be read (Unleash unreachable: ConnectError"
    )
    assert refused["reason"].endswith("starts only once Unleash says which it has; send it again")
    assert (world.states.docs, world.runs.docs) == ({}, {})
    # Once it answers, the same pipeline starts (a failure is not kept)
    world.down = False
    started = await world.start(pipeline(("development", "unleash"), ("production", "unleash")))
    assert started["outcome"] == "applied"


async def test_an_unleash_that_never_answers_holds_the_commands_no_longer_than_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given Unleash accepting the request and never answering (short deadline for the test)
    monkeypatch.setattr(pipelines, "ENVIRONMENTS_WAIT_SECONDS", 0.2)
    world = World()
    world.hangs = True
    # Then the pipeline is refused once the deadline passes, saying so, and starts nothing
    refused = await asyncio.wait_for(
        world.start(pipeline(("development", "unleash"), ("production", "unleash"))), 30
    )
    assert refused["outcome"] == "rejected"
    assert "Unleash's environments: no complete answer within 0.2 s" in refused["reason"]
    assert (world.states.docs, world.runs.docs) == ({}, {})


async def test_a_pipeline_on_the_controller_s_flag_states_never_asks_unleash() -> None:
    world = World()
    world.down = True
    started = await world.start(pipeline(("staging", "own"), ("production", "own")))
    assert started["outcome"] == "applied"
    assert world.reads == 0
