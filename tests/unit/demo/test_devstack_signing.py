"""The dev controller signs its decisions and flag states with a key of its own, so an audit
export of the dev stack checks each decision."""

from __future__ import annotations

from pathlib import Path

from controller.demo.devstack import CONTROLLER_KEY_ID, KEY_ID, dev_config
from controller.settings import Settings


def test_the_controller_signs_with_its_own_key_beside_the_operators(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / f"{CONTROLLER_KEY_ID}.key"
    config = dev_config(
        {"kafka": "k:1", "redis": "redis://r"},
        public_key="p",
        ports=(9000, 9001),
        token="t",
        signing_key=key_file,
    )
    assert config["signing"] == {"key_file": str(key_file), "key_id": "dev-controller"}
    assert config["engine"]["operator_keys"] == {KEY_ID: "p"}
    settings = Settings.model_validate(config)
    assert (settings.signing.key_file, settings.signing.key_id) == (key_file, "dev-controller")
