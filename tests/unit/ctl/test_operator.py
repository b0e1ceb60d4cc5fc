"""rolloutctl: key files, signed commands that verify, plans, usage errors, help."""

from __future__ import annotations

import io
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from controller.core.rollouts.plan import DEFAULT_PLAN, load_plan
from controller.core.trust import signing
from controller.core.wire import JsonObject, sent_object
from controller.core.wire.messages import Command
from controller.ctl.app import main
from controller.ctl.exits import EXIT_CONFIG, EXIT_USAGE
from controller.ctl.operate import segments
from controller.ctl.operate.commands import (
    command_record,
    encode_command,
    signed_model,
    verify_command,
)
from controller.ctl.usage import UsageError

PLAN_YAML = """\
name: careful
stages:
  - {percent: 2, min_duration: PT10M, min_units_per_arm: 50}
  - {percent: 100, min_duration: 0, min_units_per_arm: 0}
guardrails:
  - {metric: error_rate, tolerance: 0.01}
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ROLLOUTCTL_ACTOR", "ROLLOUTCTL_KEY", "ROLLOUTCTL_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def keygen(tmp_path: Path, capsys: pytest.CaptureFixture[str], key_id: str = "alice") -> str:
    """Run keygen into tmp_path; return the printed public key."""
    assert main(["keygen", "--key-id", key_id, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("public key: "))
    return line.removeprefix("public key: ")


def sign(capsys: pytest.CaptureFixture[str], tmp_path: Path, *extra: str) -> dict[str, Any]:
    key = tmp_path / "alice.key"
    code = main(["sign", *extra, "--key", str(key), "--key-id", "alice", "--actor", "ops"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    assert len(lines) == 1
    command: dict[str, Any] = json.loads(lines[0])
    return command


# -- keygen ---------------------------------------------------------------------------


def test_keygen_writes_a_private_file_and_prints_the_config_snippet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keygen", "--key-id", "alice", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    path = tmp_path / "alice.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    private_text = path.read_text().strip()
    assert private_text not in captured.out
    assert private_text not in captured.err

    public = captured.out.splitlines()[0].removeprefix("public key: ")
    private = signing.load_private_key(private_text)
    assert signing.public_key_text(private.public_key()) == public
    snippet = captured.out[captured.out.index("engine:") :]
    assert snippet.startswith(f"engine:\n  operator_keys:\n    alice: {public}\n")
    assert yaml.safe_load(snippet) == {"engine": {"operator_keys": {"alice": public}}}


def test_keygen_refuses_to_overwrite_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = keygen(tmp_path, capsys)
    path = tmp_path / "alice.key"
    before = path.read_text()

    assert main(["keygen", "--key-id", "alice", "--out", str(tmp_path)]) != 0
    captured = capsys.readouterr()
    assert "exists" in captured.err
    assert "--force" in captured.err
    assert captured.err.count("\n") == 1
    assert path.read_text() == before

    assert main(["keygen", "--key-id", "alice", "--out", str(tmp_path), "--force"]) == 0
    second = capsys.readouterr().out.splitlines()[0].removeprefix("public key: ")
    assert second != first
    assert path.read_text() != before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keygen_defaults_to_the_config_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keygen", "--key-id", "bob"]) == 0
    assert (tmp_path / "home" / ".config" / "rolloutctl" / "bob.key").exists()


@pytest.mark.parametrize("key_id", ["../escape", ".hidden", "a/b", "x" * 65, ""])
def test_keygen_refuses_key_ids_unsafe_as_file_names(
    key_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keygen", "--key-id", key_id, "--out", str(tmp_path)]) == EXIT_USAGE
    assert "key id" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_keygen_quotes_key_ids_yaml_would_misread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keygen", "--key-id", "yes", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    public = out.splitlines()[0].removeprefix("public key: ")
    snippet = out[out.index("engine:") :]
    assert yaml.safe_load(snippet) == {"engine": {"operator_keys": {"yes": public}}}


# -- sign and verify ------------------------------------------------------------------


def test_signed_command_verifies_with_the_printed_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    public = keygen(tmp_path, capsys)
    command = sign(capsys, tmp_path, "pause", "checkout.v2", "--reason", "looks odd")

    assert signing.verify(command, signing.load_public_key(public))
    assert command["type"] == "command"
    assert command["v"] == 1
    assert command["action"] == "pause"
    assert command["flag"] == "checkout.v2"
    assert command["actor"] == "ops"
    assert command["reason"] == "looks odd"
    assert command["key_id"] == "alice"
    assert isinstance(command["ts"], int)
    assert len(command["id"]) == 32
    assert "plan" not in command
    Command.model_validate(command)


def test_tampering_with_any_field_breaks_the_signature(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = signing.load_public_key(keygen(tmp_path, capsys))
    command = sign(capsys, tmp_path, "promote", "f1", "--to-end", "--reason", "go")
    assert signing.verify(command, key)
    for field in command:
        if field == "sig":
            continue
        tampered = dict(command)
        tampered[field] = _changed(command[field])
        assert not signing.verify(tampered, key), field
    for extra in ({"plan": None}, {"note": "x"}):
        assert not signing.verify(command | extra, key)
    dropped = {k: v for k, v in command.items() if k != "reason"}
    assert not signing.verify(dropped, key)


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return f"{value}x"


def test_tampering_with_the_plan_breaks_the_signature(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = signing.load_public_key(keygen(tmp_path, capsys))
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(PLAN_YAML)
    command = sign(capsys, tmp_path, "start", "f1", "--plan", str(plan_file))
    tampered = json.loads(json.dumps(command))
    tampered["plan"]["stages"][0]["percent"] = 50.0
    assert signing.verify(command, key)
    assert not signing.verify(tampered, key)


def test_verify_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    public = keygen(tmp_path, capsys)
    line = json.dumps(sign(capsys, tmp_path, "kill", "f1"))

    monkeypatch.setattr("sys.stdin", io.StringIO(line))
    assert main(["verify", "--public-key", public]) == 0
    assert capsys.readouterr().out.strip() == "valid"

    monkeypatch.setattr("sys.stdin", io.StringIO(line.replace('"kill"', '"abort"')))
    assert main(["verify", "--public-key", public]) == 1
    assert capsys.readouterr().out.strip() == "invalid: bad signature"

    other = signing.generate_key()[1]
    monkeypatch.setattr("sys.stdin", io.StringIO(line))
    assert main(["verify", "--public-key", other]) == 1

    monkeypatch.setattr("sys.stdin", io.StringIO("[1, 2]"))
    assert main(["verify", "--public-key", public]) == 1
    assert capsys.readouterr().out.startswith("invalid:")

    monkeypatch.setattr("sys.stdin", io.StringIO(line))
    assert main(["verify", "--public-key", "not-base64!"]) == EXIT_USAGE


def test_defaults_come_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    public = keygen(tmp_path, capsys)
    monkeypatch.setenv("ROLLOUTCTL_KEY", str(tmp_path / "alice.key"))
    monkeypatch.setenv("ROLLOUTCTL_KEY_ID", "alice")
    monkeypatch.setenv("ROLLOUTCTL_ACTOR", "carol")
    assert main(["sign", "resume", "f1"]) == 0
    command = json.loads(capsys.readouterr().out)
    assert command["actor"] == "carol"
    assert command["key_id"] == "alice"
    assert signing.verify(command, signing.load_public_key(public))


def test_the_key_defaults_to_the_keygen_location(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", "--key-id", "dana"]) == 0
    capsys.readouterr()
    assert main(["sign", "approve", "f1", "--key-id", "dana", "--actor", "dana"]) == 0
    assert json.loads(capsys.readouterr().out)["key_id"] == "dana"


# -- plans ------------------------------------------------------------------------------


def test_start_embeds_the_plan_from_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    public = keygen(tmp_path, capsys)
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(PLAN_YAML)
    command = sign(capsys, tmp_path, "start", "f1", "--plan", str(plan_file))

    assert command["plan"] == load_plan(PLAN_YAML).model_dump(mode="json")
    assert load_plan(json.dumps(command["plan"])) == load_plan(PLAN_YAML)
    assert command["plan"]["name"] == "careful"
    assert signing.verify(command, signing.load_public_key(public))


def test_start_without_a_plan_uses_the_default_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keygen(tmp_path, capsys)
    key = ["--key", str(tmp_path / "alice.key"), "--key-id", "alice", "--actor", "ops"]
    assert main(["sign", "start", "f1", *key]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["plan"] == DEFAULT_PLAN.model_dump(mode="json")
    assert "default plan" in captured.err


@pytest.mark.parametrize(
    ("plan_yaml", "field"),
    [
        ("stages:\n  - {percent: 150}\n", "stages.0.percent"),
        ("stages:\n  - {percent: 5}\nalpha: 0.9\n", "alpha"),
        ("stages:\n  - {percent: 5}\nsurprise: 1\n", "surprise"),
        ("stages: [\n", "YAML"),
        # valid values, but the 100% stage waits for a control arm it never has
        ("stages:\n  - {percent: 50}\n  - {percent: 100}\n", "stages[1].min_units_per_arm"),
    ],
)
def test_start_rejects_an_invalid_plan(
    plan_yaml: str, field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keygen(tmp_path, capsys)
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan_yaml)
    key = ["--key", str(tmp_path / "alice.key"), "--key-id", "alice", "--actor", "ops"]
    assert main(["sign", "start", "f1", "--plan", str(plan_file), *key]) == EXIT_CONFIG
    captured = capsys.readouterr()
    assert captured.out == ""
    assert field in captured.err
    assert captured.err.startswith("rolloutctl: ")


def test_a_missing_plan_file_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keygen(tmp_path, capsys)
    key = ["--key", str(tmp_path / "alice.key"), "--key-id", "alice", "--actor", "ops"]
    missing = str(tmp_path / "nope.yaml")
    assert main(["sign", "start", "f1", "--plan", missing, *key]) == EXIT_CONFIG
    assert "nope.yaml" in capsys.readouterr().err


# -- usage and key errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pause", "bad flag!"], "flag"),
        (["pause", "f1", "--to-end"], "--to-end"),
        (["pause", "f1", "--plan", "plan.yaml"], "--plan"),
        (["pause", "f1", "--reason", "x" * 501], "reason"),
    ],
)
def test_invalid_commands_are_usage_errors(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keygen(tmp_path, capsys)
    key = ["--key", str(tmp_path / "alice.key"), "--key-id", "alice", "--actor", "ops"]
    assert main(["sign", *args, *key]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert captured.err.count("\n") == 1


def test_missing_key_id_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sign", "pause", "f1", "--key", str(tmp_path / "k"), "--actor", "x"]) == 2
    assert "ROLLOUTCTL_KEY_ID" in capsys.readouterr().err


def test_bad_key_files_are_config_errors_and_never_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["sign", "pause", "f1", "--key-id", "alice", "--actor", "ops", "--key"]
    assert main([*args, str(tmp_path / "missing.key")]) == EXIT_CONFIG
    assert "missing.key" in capsys.readouterr().err

    bad = tmp_path / "bad.key"
    bad.write_text("c2VjcmV0LWJ1dC13cm9uZy1sZW5ndGg=\n")
    bad.chmod(0o600)
    assert main([*args, str(bad)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "c2VjcmV0" not in err
    assert "private key" in err


def test_a_key_file_readable_by_others_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keygen(tmp_path, capsys)
    key = tmp_path / "alice.key"
    key.chmod(0o644)
    args = ["sign", "pause", "f1", "--key", str(key), "--key-id", "alice", "--actor", "o"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "chmod 600" in captured.err
    assert json.loads(captured.out)["action"] == "pause"


# -- the functions sign and send share ----------------------------------------------------


def test_signed_command_is_the_value_send_produces() -> None:
    private, public = signing.generate_key()
    command = signed_model(
        "start",
        "checkout",
        private_key=private,
        key_id="k1",
        actor="ops",
        plan=DEFAULT_PLAN,
        command_id="c1",
        ts_ms=1_700_000_000_000,
    )
    key, value = command_record(command)
    assert key == b"checkout"
    assert value == encode_command(command)
    assert b"\n" not in value
    received = orjson.loads(value)
    assert received == sent_object(command)
    assert signing.verify(received, signing.load_public_key(public))
    assert verify_command(received, public) is None
    Command.model_validate_json(value)


def test_signed_command_checks_the_action_and_its_options() -> None:
    private, _ = signing.generate_key()
    base: dict[str, Any] = {"private_key": private, "key_id": "k1", "actor": "ops"}
    with pytest.raises(UsageError, match="start needs a plan"):
        signed_model("start", "f1", **base)
    with pytest.raises(UsageError, match="unknown action"):
        signed_model("explode", "f1", **base)
    with pytest.raises(UsageError, match="key_id"):
        signed_model("pause", "f1", **(base | {"key_id": "k" * 65}))
    promote = sent_object(signed_model("promote", "f1", **base))
    assert promote["to_end"] is False


# -- help -------------------------------------------------------------------------------


@pytest.mark.parametrize("subcommand", [[], ["keygen"], ["sign"], ["send"], ["verify"]])
def test_help_works_for_every_subcommand(
    subcommand: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*subcommand, "--help"])
    assert exc.value.code == 0
    assert "usage: rolloutctl" in capsys.readouterr().out


def test_missing_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["pause"])
    assert exc.value.code == EXIT_USAGE
    assert "required" in capsys.readouterr().err


RULE = 'country in ["de"]'


def _segment_command() -> JsonObject:
    unsigned = segments.commands_for("beta", action="put", actor="ops", key_id="k1", rule=RULE)
    return sent_object(unsigned[0])


def _app_key_command() -> JsonObject:
    return {
        "type": "app_key", "v": 1, "id": "c-web", "ts": 1_700_000_000_000, "action": "revoke",
        "target": "web", "actor": "ops", "key_id": "k1",
    }  # fmt: skip


@pytest.mark.parametrize("made", [_segment_command, _app_key_command])
@pytest.mark.parametrize(
    ("tamper", "verdict"),
    [
        (None, None),
        ("actor", "bad signature"),
        ("type", "not a valid command: type 'nonsense' is none of command, segment_command"),
    ],
)
def test_verify_checks_segment_and_app_key_commands_as_the_controller_does(
    made: Callable[[], JsonObject], tamper: str | None, verdict: str | None
) -> None:
    private, public = signing.generate_key()
    command = made()
    command["sig"] = signing.sign(command, private)
    if tamper is not None:
        command[tamper] = "nonsense"
    found = verify_command(command, public)
    assert found == verdict or (verdict is not None and found is not None and verdict in found)
