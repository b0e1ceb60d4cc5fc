"""Approvals by several people on the real daemon, broker and Redis: a stage needing two
approvers moves on at the second distinct key, a key counts once, a replay counts nothing,
and the ledger is stored with the rollout; two keys of one holder count once, at a stage
and at a pipeline's step; a key revoked on SIGHUP withdraws a pipeline's approval as a
``revoke`` decision, as it does a rollout's."""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.core.rollouts import ApprovalGate, ApprovalRule, PauseReason
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.trust import signing
from controller.core.wire import sent_object
from controller.ctl.operate.commands import signed_model
from tests.scenarios.harness import KEY_ID, Scenario
from tests.scenarios.pipelines.test_pipelines import PLAN as PIPELINE_PLAN
from tests.support.controller_process import ControllerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG = "approvals-flag"
ROLES = {
    "roles": [
        {"name": "dev", "actions": ["start", "promote", "pause", "kill"], "environments": ["dev"]},
        {"name": "approver", "actions": ["approve"], "environments": ["*"]},
    ]
}
PLAN = Plan(
    stages=[
        Stage(
            percent=5,
            min_duration=timedelta(seconds=2),
            min_units_per_arm=20,
            approval=ApprovalGate(needs=(ApprovalRule(role="approver", count=2),)),
        ),
        Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
    ],
    guardrails=[Guardrail(metric="error_rate")],
    alpha=0.01,
)


def public(key: Ed25519PrivateKey) -> str:
    return signing.public_key_text(key.public_key())


class Operators:
    """Keys with roles, each sending signed commands and awaiting their decisions."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.keys = {name: Ed25519PrivateKey.generate() for name in ("ana", "bo", "dev-1")}

    def records(self) -> dict[str, Any]:
        roles = {"ana": ["approver"], "bo": ["approver"], "dev-1": ["dev"]}
        return {
            KEY_ID: public(self.scenario.key),
            **{k: {"public_key": public(key), "roles": roles[k]} for k, key in self.keys.items()},
        }

    def command(self, key_id: str, action: str) -> dict[str, Any]:
        return sent_object(
            signed_model(
                action, FLAG, private_key=self.keys[key_id], key_id=key_id, actor=f"{key_id}-person"
            )
        )

    async def decided(self, command: dict[str, Any], nth: int = 1) -> dict[str, Any]:
        """The ``nth`` decision on ``command`` (a replay is decided again)."""
        await self.scenario.send(command, flag=FLAG)
        found: list[dict[str, Any]] = await self.scenario.until(
            lambda: found if len(found := self._on(command["id"])) >= nth else None,
            timeout=30,
            what=f"decision {nth} on {command['key_id']}'s {command['action']}",
        )
        return found[nth - 1]

    def _on(self, command_id: str) -> list[dict[str, Any]]:
        return [d for d in self.scenario.observed.decisions if d.get("command_id") == command_id]


async def test_a_stage_needing_two_approvers_moves_on_at_the_second_distinct_key(
    scenario: Scenario,
) -> None:
    # Given a stage that needs two approvals from approver keys, awaiting them
    people = Operators(scenario)
    scenario.configure(
        RC_ENGINE__OPERATOR_KEYS=orjson.dumps(people.records()).decode(),
        RC_ENGINE__ROLES=orjson.dumps(ROLES).decode(),
        RC_ENGINE__ENVIRONMENTS='{"names": ["dev", "production"], "default": "production"}',
    )
    scenario.start_daemon()
    scenario.run_apps(FLAG)
    await scenario.start(FLAG, PLAN)

    async def awaiting() -> Any:
        rollout = await scenario.rollout(FLAG)
        return (
            rollout if rollout and rollout.pause_reason is PauseReason.AWAITING_APPROVAL else None
        )

    await scenario.until(awaiting, timeout=30, what="the stage awaiting its approvals")

    # When one approver approves, the stage does not move
    first = people.command("ana", "approve")
    counted = await people.decided(first)
    assert counted["outcome"] == "applied"
    assert counted["reason"] == (
        "ana-person (key ana, approver) approved stage 1: 1 more from approver"
    )
    # ...nor when the same key approves again
    again = await people.decided(people.command("ana", "approve"))
    assert again["outcome"] == "rejected"
    assert "key ana already approved stage-0" in again["reason"]
    # ...nor when the first approval is sent again: a replay counts nothing
    replayed = await people.decided(first, nth=2)
    assert (replayed["outcome"], replayed["reason"]) == ("rejected", "replayed command id")
    # ...nor when a key without the role approves
    dev = await people.decided(people.command("dev-1", "approve"))
    assert dev["outcome"] == "rejected"
    assert "may not approve in production" in dev["reason"]
    # The ledger is stored with the rollout: one approval, ana's
    stored = await scenario.rollout(FLAG)
    assert stored is not None
    assert [a.key_id for a in stored.approvals.approvals] == ["ana"]
    assert stored.stage == 0

    # When a second approver approves, the stage moves on
    moved = await people.decided(people.command("bo", "approve"))
    assert moved["outcome"] == "applied"
    assert moved["stage"] == 1
    # And the audit names both approvals, who and when
    assert moved["evidence"]["approved"] == {"approver": ["ana-person (ana)", "bo-person (bo)"]}
    assert moved["evidence"]["approval"]["key_id"] == "bo"
    assert moved["evidence"]["approval"]["at"]
    # # A dev key's promote in production is refused with the reason
    promote = await people.decided(people.command("dev-1", "promote"))
    assert promote["outcome"] == "rejected"
    assert promote["reason"] == (
        "key dev-1 (roles: dev) may not promote in production: it may only in dev"
    )


# -- a person counts once, whichever of their keys signs ---------------------------------------

HOLDERS = {"ana-laptop": "ana", "ana-phone": "ana", "bo": "bo"}


class Holders:
    """Approver keys, two held by one person, each sending signed approvals."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.keys = {key_id: Ed25519PrivateKey.generate() for key_id in HOLDERS}

    def configure(self) -> None:
        records: dict[str, Any] = {KEY_ID: public(self.scenario.key)}
        for key_id, key in self.keys.items():
            record = {"public_key": public(key), "roles": ["approver"]}
            # bo's key names no holder: a key naming none is its own holder
            records[key_id] = record if key_id == "bo" else {**record, "holder": "ana"}
        self.scenario.configure(
            RC_ENGINE__OPERATOR_KEYS=orjson.dumps(records).decode(),
            RC_ENGINE__ROLES=orjson.dumps(ROLES).decode(),
            RC_ENGINE__ENVIRONMENTS='{"names": ["dev", "production"], "default": "production"}',
        )

    async def approve(self, flag: str, key_id: str) -> dict[str, Any]:
        command = sent_object(
            signed_model(
                "approve",
                flag,
                private_key=self.keys[key_id],
                key_id=key_id,
                actor=f"{HOLDERS[key_id]}-person",
                environment="production",
            )
        )
        found: dict[str, Any] = await self.scenario.decided(
            command, flag=flag, what=f"{key_id}'s approve"
        )
        return found


ONE_PERSON_TWICE = "ana, who holds key ana-phone, already approved {step} at"


def two_step_pipeline() -> dict[str, Any]:
    """Dev, then production once two people holding approver have approved it."""
    return {
        "name": "release",
        "plans": {"fast": PIPELINE_PLAN},
        "plan": "fast",
        "steps": [
            {"environment": "dev"},
            {
                "environment": "production",
                "approval": {"needs": [{"role": "approver", "count": 2}]},
            },
        ],
    }


def started_in(scenario: Scenario, flag: str, environment: str) -> dict[str, Any] | None:
    """The pipeline's start of ``environment``, once published."""
    return next(
        (
            d
            for d in scenario.observed.decisions
            if d["flag"] == flag
            and d["action"] == "pipeline_start"
            and d["evidence"].get("environment") == environment
        ),
        None,
    )


async def test_two_keys_of_one_holder_count_once_at_a_stage_needing_two_approvers(
    scenario: Scenario,
) -> None:
    # Given a stage needing two approvers, and ana holding two approver keys
    people = Holders(scenario)
    people.configure()
    scenario.start_daemon()
    scenario.run_apps(FLAG)
    await scenario.start(FLAG, PLAN)

    async def awaiting() -> Any:
        rollout = await scenario.rollout(FLAG)
        return (
            rollout if rollout and rollout.pause_reason is PauseReason.AWAITING_APPROVAL else None
        )

    await scenario.until(awaiting, timeout=30, what="the stage awaiting its approvals")
    # When ana approves with one key, then with the other
    first = await people.approve(FLAG, "ana-laptop")
    assert first["reason"] == (
        "ana-person (key ana-laptop, approver) approved stage 1: 1 more from approver"
    )
    assert first["evidence"]["approval"]["holder"] == "ana"
    second = await people.approve(FLAG, "ana-phone")
    # Then her second key counts nothing, and the stage stays where it was
    assert second["outcome"] == "rejected"
    assert second["reason"].startswith(ONE_PERSON_TWICE.format(step="stage-0"))
    assert second["reason"].endswith(
        "with key ana-laptop: a person counts once, whichever key they sign with"
    )
    stored = await scenario.rollout(FLAG)
    assert stored is not None
    assert (stored.stage, [a.key_id for a in stored.approvals.approvals]) == (0, ["ana-laptop"])
    # And a second person's approval moves it on
    moved = await people.approve(FLAG, "bo")
    assert (moved["outcome"], moved["stage"]) == ("applied", 1)
    assert moved["evidence"]["approved"] == {
        "approver": ["ana-person (ana-laptop)", "bo-person (bo)"]
    }


@pytest.mark.timeout(300)  # its own waits (up to 180 s) run out before pytest's limit
async def test_two_keys_of_one_holder_do_not_start_a_pipeline_step_needing_two_approvers(
    scenario: Scenario,
) -> None:
    # Given a pipeline whose production step needs two approvers, after dev
    flag = "pipe-one-person"
    people = Holders(scenario)
    people.configure()
    scenario.start_daemon()
    for environment in ("dev", "production"):
        scenario.run_apps(flag if environment == "production" else f"{flag}@{environment}")
    command = scenario.pipeline_command(flag, two_step_pipeline())
    started = await scenario.decided(command, flag=flag, what="the pipeline's start")
    assert started["action"] == "pipeline_start"
    # When ana approves production with both her keys before dev completes
    first = await people.approve(flag, "ana-laptop")
    assert (first["action"], first["outcome"]) == ("pipeline_approval", "applied")
    second = await people.approve(flag, "ana-phone")
    assert (second["action"], second["outcome"]) == ("pipeline_approval", "rejected")
    assert second["reason"].startswith(ONE_PERSON_TWICE.format(step="production"))
    # Then dev completes and production still waits for a second person
    waiting = await scenario.until(
        lambda: scenario.observed.decision_where(flag=flag, action="pipeline_gate"),
        timeout=180,
        what="production waiting for its approvals",
    )
    assert waiting["reason"] == "production waits for: approvals: 1 more from approver"
    assert started_in(scenario, flag, "production") is None
    # And bo's approval starts production
    await people.approve(flag, "bo")
    production = await scenario.until(
        lambda: started_in(scenario, flag, "production"), timeout=30, what="production starting"
    )
    assert [a["holder"] for a in production["evidence"]["approvals"]] == ["ana", "bo"]


async def test_a_key_revoked_on_sighup_withdraws_its_pipeline_approval_as_a_revoke(
    scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a daemon reading its keys from its config file, and a pipeline whose
    # production step needs two approvers, approved once by ana before it starts
    flag = "pipe-revoked"
    people = Holders(scenario)
    config = tmp_path / "controller.yaml"

    def write(key_ids: list[str]) -> None:
        keys: dict[str, Any] = {KEY_ID: public(scenario.key)}
        for key_id in key_ids:
            keys[key_id] = {"public_key": public(people.keys[key_id]), "roles": ["approver"]}
        engine = {
            "environments": {"names": ["dev", "production"], "default": "production"},
            "roles": ROLES,
            "operator_keys": keys,
        }
        config.write_text(yaml.safe_dump({"engine": engine}), encoding="utf-8")

    write(["ana-laptop", "bo"])
    for name in ("OPERATOR_KEYS", "ROLES", "ENVIRONMENTS"):
        monkeypatch.delenv(f"RC_ENGINE__{name}", raising=False)
    env = {k: v for k, v in scenario.daemon_env().items() if not k.startswith("RC_ENGINE__")}
    scenario.daemon = ControllerProcess(
        env=env, log_path=tmp_path / "controller.log", args=("--config", str(config))
    )
    scenario.start_daemon()
    command = scenario.pipeline_command(flag, two_step_pipeline())
    started = await scenario.decided(command, flag=flag, what="the pipeline's start")
    assert started["action"] == "pipeline_start"
    approved = await people.approve(flag, "ana-laptop")
    assert (approved["action"], approved["outcome"]) == ("pipeline_approval", "applied")

    # When an admin removes ana's key and sends SIGHUP
    write(["bo"])
    os.kill(scenario.daemon.pid, signal.SIGHUP)
    # Then the run records a revoke, as a rollout does, naming the key and the step
    revoked = await scenario.until(
        lambda: scenario.observed.decision_where(flag=flag, action="revoke"),
        timeout=30,
        what="the pipeline's revoke decision",
    )
    assert (revoked["kind"], revoked["outcome"]) == ("pipeline", "applied")
    assert revoked["reason"] == "key ana-laptop revoked: its approvals of production count no more"
    assert [a["key_id"] for a in revoked["evidence"]["removed"]] == ["ana-laptop"]
    assert scenario.observed.decision_where(flag=flag, reason=revoked["reason"]) == revoked
