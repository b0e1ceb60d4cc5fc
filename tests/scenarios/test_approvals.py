"""Approvals by several people on the real daemon, broker and Redis: a stage needing two
approvers moves on at the second distinct key, a key counts once, a replay counts nothing,
and the ledger is stored with the rollout."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.core.rollouts import ApprovalGate, ApprovalRule, PauseReason
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.trust import signing
from controller.ctl.operate.commands import signed_command
from tests.scenarios.harness import KEY_ID, Scenario

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
        return signed_command(
            action, FLAG, private_key=self.keys[key_id], key_id=key_id, actor=f"{key_id}-person"
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
