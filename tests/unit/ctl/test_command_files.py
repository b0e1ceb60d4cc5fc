"""``rolloutctl sign --file`` and ``send --file``: a proposal made a person's signed command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from controller.core.wire import sent_object
from controller.ctl.app import main
from controller.ctl.exits import EXIT_FAILURE, EXIT_USAGE
from controller.ctl.operate.commands import command_model, verify_command

PROPOSAL = sent_object(
    command_model("pause", "checkout", actor="an agent", key_id=None, reason="p99 up")
)
PROPOSAL |= {"expect_version": 4, "expect_rollout_id": "r-1", "expect_stage": 1, "ts": 1}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ROLLOUTCTL_ACTOR", "ROLLOUTCTL_KEY", "ROLLOUTCTL_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def public_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["keygen", "--key-id", "alice", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    return next(ln for ln in out.splitlines() if ln.startswith("public key: "))[12:]


def written(tmp_path: Path, data: object, name: str = "proposal.json") -> Path:
    path = tmp_path / name
    path.write_bytes(orjson.dumps(data))
    return path


def signing(tmp_path: Path, *extra: str) -> list[str]:
    return ["--key", str(tmp_path / "alice.key"), "--key-id", "alice", "--actor", "ops", *extra]


def test_a_signed_proposal_is_the_signers_and_keeps_its_id_and_preconditions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], public_key: str
) -> None:
    path = written(tmp_path, PROPOSAL)
    assert main(["sign", "--file", str(path), *signing(tmp_path)]) == 0
    signed: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert verify_command(signed, public_key) is None
    assert (signed["actor"], signed["key_id"]) == ("ops", "alice")
    assert signed["id"] == PROPOSAL["id"]
    assert signed["ts"] > PROPOSAL["ts"]  # stamped at signing: a proposal may wait
    kept = ("action", "flag", "reason", "expect_version", "expect_rollout_id", "expect_stage")
    assert {k: signed[k] for k in kept} == {k: PROPOSAL[k] for k in kept}


@pytest.mark.parametrize(
    ("content", "extra", "said"),
    [
        (PROPOSAL, ["pause", "checkout"], "leave out action, flag"),
        (PROPOSAL, ["--environment", "prod"], "leave out environment"),
        ([PROPOSAL], [], "not an object"),
        ({**PROPOSAL, "expect_version": -1}, [], "expect_version"),
        ({**PROPOSAL, "sig": "c2lnbmVk"}, [], "signed already"),
        ({**PROPOSAL, "reason": "x" * 300_000}, [], "over 262144 bytes"),
    ],
)
def test_a_command_file_that_cannot_be_signed_is_refused_with_the_reason(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    public_key: str,
    content: object,
    extra: list[str],
    said: str,
) -> None:
    path = written(tmp_path, content)
    assert main(["sign", *extra, "--file", str(path), *signing(tmp_path)]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert said in captured.err
    assert captured.out == ""


def test_an_unsigned_file_is_not_sent_without_sign(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = written(tmp_path, PROPOSAL)
    # No broker is needed: the refusal comes before any connection.
    assert main(["send", "--file", str(path), "--bootstrap", "127.0.0.1:1"]) == EXIT_USAGE
    assert "unsigned command: sign it with --sign" in capsys.readouterr().err


def test_sign_needs_an_action_and_flag_or_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sign", "pause"]) == EXIT_USAGE
    assert "needs ACTION FLAG, or --file FILE" in capsys.readouterr().err


def test_a_signed_file_is_sent_as_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], public_key: str
) -> None:
    path = written(tmp_path, PROPOSAL)
    assert main(["sign", "--file", str(path), *signing(tmp_path)]) == 0
    signed = written(tmp_path, json.loads(capsys.readouterr().out), "signed.json")
    # Past every check of the file, to the broker, which is not there.
    argv = ["send", "--file", str(signed), "--bootstrap", "127.0.0.1:1", "--timeout", "2"]
    assert main(argv) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "127.0.0.1:1" in err
    assert "unsigned" not in err
    assert "--sign" not in err
