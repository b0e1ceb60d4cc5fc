"""Roles per key on the real daemon, broker and Redis: a dev key cannot promote production,
an on-call key kills anywhere, and each environment's rollout is its own."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.core.trust import signing
from controller.core.wire import sent_object
from controller.ctl.operate.commands import signed_model
from tests.scenarios.harness import KEY_ID, Scenario, manual_plan
from tests.support.controller_process import ControllerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG = "roles-flag"
ROLES = {
    "roles": [
        {"name": "dev", "actions": ["start", "promote", "pause", "kill"], "environments": ["dev"]},
        {"name": "on-call", "actions": ["pause"], "environments": ["dev"], "on_call": True},
    ]
}


def public(key: Ed25519PrivateKey) -> str:
    return signing.public_key_text(key.public_key())


async def decided(
    scenario: Scenario,
    action: str,
    key_id: str,
    key: Ed25519PrivateKey,
    environment: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    command = sent_object(
        signed_model(
            action,
            FLAG,
            private_key=key,
            key_id=key_id,
            actor=key_id,
            environment=environment,
            **options,
        )
    )
    found: dict[str, Any] = await scenario.decided(
        command,
        flag=FLAG,
        what=f"the decision on {key_id}'s {action} in {environment or 'the default'}",
    )
    return found


async def test_a_dev_key_cannot_promote_production_and_on_call_kills_anywhere(
    scenario: Scenario,
) -> None:
    # Given a controller serving dev and production, with a dev key and an on-call key
    dev, pager = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    keys = {
        KEY_ID: public(scenario.key),  # today's form: every action everywhere
        "dev-1": {"public_key": public(dev), "roles": ["dev"]},
        "pager": {"public_key": public(pager), "roles": ["on-call"]},
    }
    scenario.configure(
        RC_ENGINE__OPERATOR_KEYS=orjson.dumps(keys).decode(),
        RC_ENGINE__ROLES=orjson.dumps(ROLES).decode(),
        RC_ENGINE__ENVIRONMENTS='{"names": ["dev", "production"], "default": "production"}',
    )
    scenario.start_daemon()
    # ...and the flag rolling out in both environments
    plan = manual_plan()
    started = await decided(scenario, "start", KEY_ID, scenario.key, plan=plan)
    assert (started["flag"], started["outcome"]) == (FLAG, "applied")
    in_dev = await decided(scenario, "start", "dev-1", dev, "dev", plan=plan)
    assert (in_dev["flag"], in_dev["outcome"]) == (f"{FLAG}@dev", "applied")

    # When the dev key promotes production, it is refused with the reason
    refused = await decided(scenario, "promote", "dev-1", dev, "production")
    assert refused["outcome"] == "rejected"
    assert refused["reason"] == (
        "key dev-1 (roles: dev) may not promote in production: it may only in dev"
    )
    # ...while it promotes dev
    promoted = await decided(scenario, "promote", "dev-1", dev, "dev")
    assert (promoted["flag"], promoted["outcome"]) == (f"{FLAG}@dev", "applied")
    production = await scenario.rollout(FLAG)
    assert production is not None
    assert production.stage == 0

    # When the on-call key, whose role grants only pause in dev, kills production
    killed = await decided(scenario, "kill", "pager", pager)
    assert (killed["flag"], killed["outcome"]) == (FLAG, "applied")
    # Then production serves control, and dev's rollout runs on, under its own key
    state = await scenario.until(
        lambda: next(
            (
                s
                for s in scenario.observed.flag_states
                if s["flag"] == FLAG and s["status"] == "killed"
            ),
            None,
        ),
        timeout=30,
        what="production's killed flag state",
    )
    assert state["percent"] == 0
    dev_rollout = await scenario.rollout(f"{FLAG}@dev")
    assert dev_rollout is not None
    assert dev_rollout.phase.value == "running"
    assert dev_rollout.stage == 1
    # And the on-call key may do nothing else outside its role
    paused = await decided(scenario, "pause", "pager", pager)
    assert paused["outcome"] == "rejected"
    assert "may not pause in production: it may only in dev" in paused["reason"]


async def test_roles_reload_on_sighup_with_the_keys(
    scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a daemon reading its keys and roles from its config file only
    dev = Ed25519PrivateKey.generate()
    config = tmp_path / "controller.yaml"

    def write(dev_roles: list[str]) -> None:
        engine = {
            "environments": {"names": ["dev", "production"], "default": "production"},
            "roles": ROLES,
            "operator_keys": {
                KEY_ID: public(scenario.key),
                "dev-1": {"public_key": public(dev), "roles": dev_roles},
            },
        }
        config.write_text(yaml.safe_dump({"engine": engine}), encoding="utf-8")

    write(["dev"])
    for name in ("OPERATOR_KEYS", "ROLES", "ENVIRONMENTS"):
        monkeypatch.delenv(f"RC_ENGINE__{name}", raising=False)
    env = {k: v for k, v in scenario.daemon_env().items() if k != "RC_ENGINE__OPERATOR_KEYS"}
    scenario.daemon = ControllerProcess(
        env=env, log_path=tmp_path / "controller.log", args=("--config", str(config))
    )
    scenario.start_daemon()
    await decided(scenario, "start", KEY_ID, scenario.key, plan=manual_plan())
    refused = await decided(scenario, "pause", "dev-1", dev)
    assert refused["outcome"] == "rejected"

    # When an admin makes dev-1 an operator and sends SIGHUP
    write(["operator"])
    os.kill(scenario.daemon.pid, signal.SIGHUP)
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(kind="operator_keys"),
        timeout=30,
        what="the reload's alert",
    )
    # Then the audit names the key given other roles, and what each key holds now
    assert alert["details"]["regranted"] == ["dev-1"]
    assert alert["details"]["roles"] == {KEY_ID: ["operator"], "dev-1": ["operator"]}
    # And its pause in production applies, with the same daemon still running
    assert (await decided(scenario, "pause", "dev-1", dev))["outcome"] == "applied"
