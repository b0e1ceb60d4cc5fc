"""Operator keys reload on SIGHUP, without a restart, and every reload is on the alerts topic."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.core.trust import signing
from controller.core.wire import sent_object
from controller.ctl.operate.commands import signed_model
from tests.scenarios.harness import KEY_ID, Scenario, manual_plan
from tests.support.controller_process import ControllerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG = "keys-flag"


def write_keys(config: Path, keys: dict[str, str]) -> None:
    config.write_text(yaml.safe_dump({"engine": {"operator_keys": keys}}), encoding="utf-8")


def public(key: Ed25519PrivateKey) -> str:
    return signing.public_key_text(key.public_key())


class Keys:
    """Sends commands signed by any key, and reloads the daemon's keys from its config."""

    def __init__(self, scenario: Scenario, config: Path) -> None:
        self.scenario, self.config = scenario, config
        self.reloads = 0

    async def decided(self, action: str, key_id: str, key: Ed25519PrivateKey) -> dict[str, Any]:
        command = sent_object(
            signed_model(action, FLAG, private_key=key, key_id=key_id, actor=key_id)
        )
        found: dict[str, Any] = await self.scenario.decided(
            command, flag=FLAG, what=f"the decision on {key_id}'s {action}"
        )
        return found

    async def reload(self, keys: dict[str, str] | str) -> dict[str, Any]:
        """SIGHUP after writing ``keys`` (or text) to the config; the reload's alert."""
        if isinstance(keys, str):
            self.config.write_text(keys, encoding="utf-8")
        else:
            write_keys(self.config, keys)
        self.reloads += 1
        os.kill(self.scenario.daemon.pid, signal.SIGHUP)
        wanted = self.reloads
        alerts = await self.scenario.until(
            lambda: (
                [a for a in self.scenario.observed.alerts if a["kind"] == "operator_keys"][
                    wanted - 1 :
                ]
                or None
            ),
            timeout=30,
            what=f"reload {wanted}'s alert",
        )
        alert: dict[str, Any] = alerts[0]
        return alert


async def test_operator_keys_reload_on_sighup_and_are_audited(
    scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a daemon that reads its operator keys from its config file only
    monkeypatch.delenv("RC_ENGINE__OPERATOR_KEYS", raising=False)
    config = tmp_path / "controller.yaml"
    write_keys(config, {KEY_ID: public(scenario.key)})
    env = {k: v for k, v in scenario.daemon_env().items() if k != "RC_ENGINE__OPERATOR_KEYS"}
    scenario.daemon = ControllerProcess(
        env=env, log_path=tmp_path / "controller.log", args=("--config", str(config))
    )
    scenario.start_daemon()
    keys = Keys(scenario, config)
    await scenario.start(FLAG, manual_plan())
    bob = Ed25519PrivateKey.generate()
    # ...which does not know bob yet
    refused = await keys.decided("pause", "bob", bob)
    assert (refused["outcome"], refused["reason"]) == ("rejected", "unknown key id 'bob'")

    # When an admin adds bob's key to the config and sends SIGHUP
    added = await keys.reload({KEY_ID: public(scenario.key), "bob": public(bob)})
    # Then the reload is on the alerts topic, naming the key added
    assert (added["severity"], added["flag"]) == ("info", None)
    assert added["details"]["added"] == ["bob"]
    assert added["details"]["keys"] == ["bob", KEY_ID]
    assert "added bob" in added["summary"]
    # And bob's commands apply, with the same daemon still running
    pid = scenario.daemon.pid
    assert (await keys.decided("pause", "bob", bob))["outcome"] == "applied"

    # When a key is removed, its commands are refused from then on
    removed = await keys.reload({"bob": public(bob)})
    assert removed["details"]["removed"] == [KEY_ID]
    refused = await keys.decided("resume", KEY_ID, scenario.key)
    assert refused["reason"] == f"unknown key id '{KEY_ID}'"

    # When the config holds a key that does not load, nothing changes and it says so
    broken = await keys.reload({"bob": public(bob), "eve": "not-a-key"})
    assert broken["severity"] == "warning"
    assert "not reloaded" in broken["summary"]
    assert "eve" in broken["details"]["error"]
    assert (await keys.decided("resume", "bob", bob))["outcome"] == "applied"
    assert scenario.daemon.pid == pid
    assert scenario.daemon.running
