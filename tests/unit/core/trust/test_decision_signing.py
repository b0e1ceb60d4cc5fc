"""Decisions leave the controller signed, and an audit export shows each as it was written."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from controller.core.trust.audit_chain import (
    DECISION_TYPE,
    SealData,
    line_digest,
    seal,
    seal_line,
    start_digest,
)
from controller.core.trust.audit_check import Checked, Failed, check_export
from controller.core.trust.signing import (
    StateSigner,
    StateVerifier,
    decision_bytes,
    generate_key,
)
from controller.core.wire import Decision, JsonObject
from controller.ctl.report.audit_chain import check, controller_keys
from controller.ctl.usage import UsageError
from controller.daemon.outputs.signed import SigningOutputs

KEY, PUBLIC = generate_key()
SIGNER = StateSigner(KEY, "ctl-1")
VERIFIER = StateVerifier({"ctl-1": PUBLIC})
SINCE, UNTIL = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)


def _decision(n: int = 0) -> JsonObject:
    return {
        "v": 1,
        "type": "decision",
        "id": f"d-{n}",
        "ts": 1_790_000_000_000 + n,
        "flag": "checkout",
        "kind": "gate",
        "action": "rollback",
        "outcome": "applied",
        "reason": "error_rate +3.6 pp [+0.5, +6.7]",
        "stage": 1,
        "evidence": {"guardrails": {"error_rate": {"delta": 0.1 + 0.2, "lower": 1e-300}}},
    }


def test_a_signed_decision_verifies_as_published_and_read_back() -> None:
    signed = SIGNER.sign_decision(_decision())
    assert (signed["key_id"], VERIFIER.decision_problem(signed)) == ("ctl-1", None)
    # the bytes a reader parses and writes again are the signed ones: floats included
    read_back = orjson.loads(orjson.dumps(signed))
    assert VERIFIER.decision_problem(read_back) is None
    plain = SIGNER.sign_decision({**_decision(), "evidence": {}})
    assert Decision.model_validate(plain).sig == plain["sig"]  # the contract carries both
    assert decision_bytes(read_back, "ctl-1") == decision_bytes(_decision(), "ctl-1")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"outcome": "held"}, "bad_signature"),  # edited after signing
        ({"reason": "error_rate +3.6 pp [0, +13]"}, "bad_signature"),
        ({"key_id": "ctl-2"}, "unknown_key"),
        ({"sig": None}, "unsigned"),
        ({"key_id": "ctl-2", "sig": "AAAA"}, "unknown_key"),
    ],
)
def test_a_decision_edited_or_unsigned_is_named_so(change: JsonObject, problem: str) -> None:
    changed = {**SIGNER.sign_decision(_decision()), **change}
    assert VERIFIER.decision_problem(changed) == problem


class _Recorder:
    def __init__(self) -> None:
        self.published: list[tuple[str, str, bytes]] = []

    async def publish(self, messages: list[tuple[str, str, bytes]]) -> None:
        self.published.extend(messages)

    async def publish_values(self, messages: Sequence[tuple[str, str, bytes | None]]) -> None:
        raise AssertionError(messages)  # this test publishes with publish only


async def test_decisions_are_signed_on_their_way_out_alerts_are_not() -> None:
    inner = _Recorder()
    outputs = SigningOutputs(inner, flag_state_topic="fs", signer=SIGNER, decisions_topic="dec")
    decision = orjson.dumps(_decision())
    await outputs.publish(
        [("dec", "f", decision), ("alerts", "f", b'{"a":1}'), ("dec", "g", b"[]")]
    )
    [(_, _, signed), alert, not_an_object] = inner.published
    assert VERIFIER.decision_problem(orjson.loads(signed)) is None
    assert alert == ("alerts", "f", b'{"a":1}')
    assert not_an_object == ("dec", "g", b"[]")  # published as it was: it fails any check


def _export(decisions: list[JsonObject]) -> list[bytes]:
    """An export of ``decisions`` chained from the start, and its unsigned seal: what anyone
    who edits a line can write again around it."""
    start = start_digest(SINCE, UNTIL, ["decision"])
    head, lines = start, []
    for n, data in enumerate(decisions):
        event = {"specversion": "1.0", "id": f"d-{n}", "type": DECISION_TYPE, "data": data}
        line = orjson.dumps({**event, "prevdigest": head})
        lines.append(line)
        head = line_digest(line)
    opened = SealData(
        since=SINCE, until=UNTIL, types=["decision"], events=0, start=start, head=start
    )
    sealed = seal(opened, events=len(decisions), head=head, at=UNTIL, signer=None)
    return [*lines, seal_line(sealed).encode()]


def test_an_edit_the_chain_was_written_again_around_is_named_by_the_decisions_signature() -> None:
    decisions = [SIGNER.sign_decision(_decision(n)) for n in range(4)]
    assert check_export(_export(decisions), {}, controller=VERIFIER) == Checked(
        4, None, 4, ("ctl-1",)
    )
    decisions[2] = {**decisions[2], "action": "advance"}  # "it was never rolled back"
    assert check_export(_export(decisions), {}, controller=VERIFIER) == Failed(
        3, "the decision is not as the controller signed it: bad_signature"
    )
    forged = [*decisions[:1], _decision(9)]  # a decision written on the topic by someone else
    assert check_export(_export(forged), {}, controller=VERIFIER) == Failed(
        2, "the decision is not as the controller signed it: unsigned"
    )


def test_the_first_line_that_fails_is_named_whichever_check_fails_it() -> None:
    decisions = [SIGNER.sign_decision(_decision(n)) for n in range(6)]
    decisions[1] = _decision(1)  # unsigned at line 2
    lines = _export(decisions)
    edited = [*lines[:4], lines[4].replace(b'"stage":1', b'"stage":2'), *lines[5:]]
    # the unsigned decision at line 2 comes before the edit at line 5
    assert check_export(edited, {}, controller=VERIFIER) == Failed(
        2, "the decision is not as the controller signed it: unsigned"
    )
    # ...and the edit at line 5, where every decision before it is signed
    decisions[1] = SIGNER.sign_decision(_decision(1))
    lines = _export(decisions)
    edited = [*lines[:4], lines[4].replace(b'"stage":1', b'"stage":2'), *lines[5:]]
    found = check_export(edited, {}, controller=VERIFIER)
    assert found == Failed(5, "edited: line 6 names another digest for this line")


def test_audit_check_with_the_controllers_key_fails_on_the_edited_decision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    decisions = [SIGNER.sign_decision(_decision(n)) for n in range(3)]
    whole, edited = tmp_path / "whole.jsonl", tmp_path / "edited.jsonl"
    whole.write_bytes(b"\n".join(_export(decisions)) + b"\n")
    decisions[1] = {**decisions[1], "outcome": "rejected"}
    edited.write_bytes(b"\n".join(_export(decisions)) + b"\n")
    controller = controller_keys(None, [f"ctl-1={PUBLIC}"])
    assert check(whole, {}, require_signature=False, controller=controller) == 0
    # without the controller's key the rebuilt chain holds; with it, the edit is named
    assert check(edited, {}, require_signature=False) == 0
    assert check(edited, {}, require_signature=False, controller=controller) == 1
    said = capsys.readouterr().out.splitlines()[-1]
    assert said == (
        f"{edited}: line 2: the decision is not as the controller signed it: bad_signature"
    )
    with pytest.raises(UsageError):
        controller_keys(None, ["ctl-1"])
