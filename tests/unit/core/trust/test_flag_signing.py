"""Signed flag states: what is signed, who verifies, and which state an app holds.

The vectors of ``tests/vectors/flag-signing.json`` are built independently of
the controller (``tests/vectors/flag_signing.py``); the controller's signer
and verifier, and a JavaScript verifier written from ``docs/clients.md``, are
each held to them.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from controller.core.common.errors import ConfigError
from controller.core.trust import signing
from controller.core.trust.signing import StateSigner, StateVerifier, generate_key
from controller.core.wire import JsonObject, flagstates
from controller.core.wire.flagstates import Verdict, supersedes
from controller.core.wire.messages import FlagState, FlagStatus
from controller.daemon.outputs.signed import SigningOutputs, load_signer, signed_states
from controller.sdk.flags import FlagBook
from controller.settings import SigningSettings
from tests.vectors import flag_signing

FILE = json.loads(flag_signing.PATH.read_text(encoding="utf-8"))
VECTORS: list[dict[str, Any]] = FILE["vectors"]


def _message(fields: dict[str, Any]) -> FlagState:
    return FlagState.model_validate({"type": "flag_state", "v": 1, "id": "m", "ts": 0, **fields})


def _state(version: int, status: str = "rolling_out", percent: float = 10.0) -> FlagState:
    fields = {"flag": "f", "version": version, "status": status, "percent": percent, "salt": "s"}
    return _message({**fields, "rollout_id": "r1", "stage": 0})


# -- the vectors -------------------------------------------------------------------------


def test_the_vector_file_is_what_its_script_makes() -> None:
    assert flag_signing.main(["--check"]) == 0


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_the_controller_signs_the_bytes_the_spec_names(vector: dict[str, Any]) -> None:
    state = vector["state"]
    if vector["signed"] is None:
        assert "key_id" not in state
        return
    assert flagstates.signed_bytes(state, state["key_id"]).decode() == vector["signed"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_the_verifier_judges_each_vector_as_the_file_says(vector: dict[str, Any]) -> None:
    problem = StateVerifier(FILE["keys"]).problem(_message(vector["state"]))
    assert (problem is None) == vector["valid"], problem


def test_the_signer_makes_the_vectors_signatures() -> None:
    seed = base64.b64decode(FILE["private_key_seed"])
    [key_id] = FILE["keys"]
    signer = StateSigner(Ed25519PrivateKey.from_private_bytes(seed), key_id)
    for vector in (v for v in VECTORS if v["valid"]):
        unsigned = {k: v for k, v in vector["state"].items() if k not in ("key_id", "sig")}
        assert signer.sign(unsigned) == vector["state"]


def test_a_javascript_verifier_written_from_the_spec_agrees(node: str) -> None:
    script = flag_signing.PATH.with_name("flag-signing.mjs")
    done = subprocess.run(
        [node, str(script), str(flag_signing.PATH)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert json.loads(done.stdout) == {"checked": len(VECTORS), "mismatches": []}


# -- the verifier's edges ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"key_id": None, "sig": None}, "unsigned"),
        ({"sig": None}, "unsigned"),
        ({"key_id": "other"}, "unknown_key"),
        ({"sig": "not base64!"}, "bad_signature"),
        ({"sig": base64.b64encode(b"short").decode()}, "bad_signature"),
        ({"version": 8}, "bad_signature"),
        ({"stage": 3}, "bad_signature"),
        ({"salt": "other"}, "bad_signature"),
        ({"status": "completed"}, "bad_signature"),
        ({"percent": 12.5004}, None),  # the same threshold: the same arms
        ({"percent": 12.5006}, "bad_signature"),
        ({}, None),
    ],
)
def test_a_state_is_trusted_only_as_signed(change: dict[str, Any], problem: str | None) -> None:
    key, public = generate_key()
    signed = StateSigner(key, "k1").sign(
        {"flag": "f", "version": 7, "status": "rolling_out", "percent": 12.5, "salt": "s"}
    )
    state = _message({**signed, **change})
    assert StateVerifier({"k1": public}).problem(state) == problem


@pytest.mark.parametrize("keys", [{"k": "not base64!"}, {"k": base64.b64encode(b"x").decode()}])
def test_a_verifier_refuses_a_key_that_is_not_one(keys: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"base64|32 bytes"):
        StateVerifier(keys)


# -- which state an app holds ------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "incoming", "verified", "verdict"),
    [
        (None, (1, "rolling_out"), True, Verdict.FIRST),
        ((1, "rolling_out"), (2, "rolling_out"), True, Verdict.NEWER),
        ((2, "rolling_out"), (2, "rolling_out"), True, Verdict.STALE),
        ((3, "rolling_out"), (2, "killed"), True, Verdict.STALE),  # signed: versions decide
        ((2**31 - 1, "completed"), (5, "killed"), False, Verdict.SAFETY),
        ((2**31 - 1, "rolling_out"), (5, "rolled_back"), False, Verdict.SAFETY),
        ((2**31 - 1, "paused"), (5, "inactive"), False, Verdict.SAFETY),
        ((2**31 - 1, "rolling_out"), (5, "rolling_out"), False, Verdict.STALE),
        ((2**31 - 1, "killed"), (5, "rolling_out"), False, Verdict.STALE),
        ((6, "killed"), (5, "killed"), False, Verdict.STALE),  # control already
        ((4, "killed"), (5, "rolling_out"), False, Verdict.NEWER),
    ],
)
def test_which_state_an_app_holds(
    held: tuple[int, str] | None, incoming: tuple[int, str], verified: bool, verdict: Verdict
) -> None:
    held_state = _state(*held) if held else None
    assert supersedes(held_state, _state(*incoming), verified=verified) is verdict


def test_a_verifying_book_holds_no_forgery_and_counts_it(caplog: pytest.LogCaptureFixture) -> None:
    key, public = generate_key()
    signer = StateSigner(key, "k1")
    fields: JsonObject = {"flag": "f", "status": "rolling_out", "salt": "s", "rollout_id": "r1"}
    book = FlagBook(keys={"k1": public})
    assert book.apply(_message(signer.sign({**fields, "version": 3, "percent": 5.0})))
    forged = _message({**fields, "version": 2**31 - 1, "percent": 100.0})
    assert not book.apply(forged)
    assert not book.apply(_message({**forged.model_dump(), "key_id": "k1", "sig": "AAAA"}))
    assert book.apply(
        _message(signer.sign({**fields, "version": 4, "status": "killed", "percent": 0.0}))
    )
    assert (book.rejected, book.stale) == (2, 0)
    assert book.rejected_by == {"unsigned": 1, "bad_signature": 1}
    logged = [r.getMessage() for r in caplog.records if "flag_state_rejected" in r.getMessage()]
    assert logged == [
        "flag_state_rejected: unsigned (flag f, version 2147483647, key None); rejected so far: 1",
        "flag_state_rejected: bad_signature (flag f, version 2147483647, key k1); "
        "rejected so far: 2",
    ]
    state = book.state("f")
    assert state is not None
    assert (state.version, state.status) == (4, FlagStatus.KILLED)


def test_a_book_that_does_not_verify_still_takes_the_kill_after_a_forgery() -> None:
    book = FlagBook([_state(3)])
    assert book.apply(_state(2**31 - 1, percent=100.0))  # forged: cannot be told apart
    assert not book.apply(_state(4, percent=50.0))
    assert book.apply(_state(5, "killed", 0.0))
    assert book.arm("f", "u")[1] == 0
    assert (book.overridden, book.stale, book.rejected) == (1, 1, 0)


# -- the controller's side ---------------------------------------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.published: list[tuple[str, str, bytes]] = []

    async def publish(self, messages: Sequence[tuple[str, str, bytes]]) -> None:
        self.published.extend(messages)

    async def publish_values(self, messages: Sequence[tuple[str, str, bytes | None]]) -> None:
        self.published.extend((t, k, v) for t, k, v in messages if v is not None)


async def test_flag_states_are_signed_on_their_way_out_and_nothing_else() -> None:
    key, public = generate_key()
    inner = _Recorder()
    outputs = SigningOutputs(inner, flag_state_topic="fs", signer=StateSigner(key, "k1"))
    state = _state(3).model_dump_json().encode()
    await outputs.publish([("fs", "f", state), ("decisions", "f", b'{"a":1}'), ("fs", "g", b"[]")])
    [(_, _, signed), other, unsignable] = inner.published
    assert other == ("decisions", "f", b'{"a":1}')
    assert unsignable == ("fs", "g", b"[]")  # passed on as it is: verifying apps refuse it
    assert StateVerifier({"k1": public}).problem(FlagState.model_validate_json(signed)) is None
    assert orjson.loads(signed)["id"] == "m"


def test_flags_answers_are_signed_with_a_key_and_as_they_were_without() -> None:
    key, public = generate_key()
    fields: JsonObject = {
        "flag": "f",
        "version": 1,
        "status": "paused",
        "percent": 1.0,
        "salt": "s",
    }
    assert signed_states([fields], None) == [fields]
    [signed] = signed_states([fields], StateSigner(key, "k1"))
    assert StateVerifier({"k1": public}).problem(_message(signed)) is None


def test_the_signing_key_comes_inline_or_from_a_file(tmp_path: Path) -> None:
    key, public = generate_key()
    text = signing.private_key_text(key)
    assert load_signer(SigningSettings()) is None  # unsigned, as before, with a warning
    inline = load_signer(SigningSettings(key=SecretStr(text), key_id="k1"))
    (tmp_path / "key").write_text(text + "\n", encoding="ascii")
    from_file = load_signer(SigningSettings(key_file=tmp_path / "key"))
    assert inline is not None
    assert from_file is not None
    assert (inline.key_id, inline.public_key) == ("k1", public)
    assert (from_file.key_id, from_file.public_key) == ("controller", public)


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_signing_key_that_is_not_one_stops_the_start(text: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="signing key"):
        load_signer(SigningSettings(key=SecretStr(text)))
    with pytest.raises(ConfigError, match="signing key file"):
        load_signer(SigningSettings(key_file=tmp_path / "missing"))
