"""rolloutctl builds each command as the contract's model, and sends the object it signed:
the same JSON object, key for key, that it built as a dict before the model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from controller.core.release import PipelineCommand
from controller.core.rollouts.plan import DEFAULT_PLAN
from controller.core.trust import signing
from controller.core.wire import Command, JsonObject, sent_object
from controller.core.wire.signed import published_order
from controller.ctl.operate.commands import command_model, encode_command, signed_model
from controller.ctl.usage import UsageError

ID, TS = "c" * 32, 1_700_000_000_000
AT = datetime(2030, 5, 1, 9, 30, tzinfo=UTC)
AT_PLUS_2 = AT.astimezone(timezone(timedelta(hours=2)))
PLAN = DEFAULT_PLAN.model_dump(mode="json")
SAME: JsonObject = {"type": "command", "v": 1, "id": ID, "ts": TS, "flag": "checkout"}
"""What every command below carries."""

# (the arguments, the object the dict-building ctl sent for them)
TABLE: list[tuple[dict[str, Any], JsonObject]] = [
    (
        {"action": "start", "plan": DEFAULT_PLAN, "reason": "go"},
        {"action": "start", "actor": "ana", "reason": "go", "key_id": "k1", "plan": PLAN},
    ),
    (
        {"action": "start", "plan": DEFAULT_PLAN, "at": AT, "environment": "prod"},
        {
            "action": "start",
            "actor": "ana",
            "reason": "",
            "key_id": "k1",
            "plan": PLAN,
            "at": "2030-05-01T09:30:00+00:00",
            "environment": "prod",
        },
    ),
    (
        {
            "action": "start",
            "plan": DEFAULT_PLAN,
            "at": AT.astimezone(timezone(timedelta(hours=2))),
        },
        {
            "action": "start",
            "actor": "ana",
            "reason": "",
            "key_id": "k1",
            "plan": PLAN,
            "at": "2030-05-01T11:30:00+02:00",
        },
    ),
    ({"action": "pause"}, {"action": "pause", "actor": "ana", "reason": "", "key_id": "k1"}),
    (
        {"action": "resume", "reason": "fixed"},
        {"action": "resume", "actor": "ana", "reason": "fixed", "key_id": "k1"},
    ),
    (
        {"action": "promote"},
        {"action": "promote", "actor": "ana", "reason": "", "key_id": "k1", "to_end": False},
    ),
    (
        {"action": "promote", "to_end": True},
        {"action": "promote", "actor": "ana", "reason": "", "key_id": "k1", "to_end": True},
    ),
    ({"action": "rollback"}, {"action": "rollback", "actor": "ana", "reason": "", "key_id": "k1"}),
    ({"action": "abort"}, {"action": "abort", "actor": "ana", "reason": "", "key_id": "k1"}),
    (
        {"action": "kill", "reason": "p99", "environment": "eu"},
        {"action": "kill", "actor": "ana", "reason": "p99", "key_id": "k1", "environment": "eu"},
    ),
    (
        {"action": "approve", "environment": "prod"},
        {"action": "approve", "actor": "ana", "reason": "", "key_id": "k1", "environment": "prod"},
    ),
    (  # a proposal: no key id
        {"action": "pause", "key_id": None},
        {"action": "pause", "actor": "ana", "reason": ""},
    ),
]


def _built(arguments: dict[str, Any]) -> Command:
    given = {"actor": "ana", "key_id": "k1"} | arguments
    action = given.pop("action")
    return command_model(action, "checkout", command_id=ID, ts_ms=TS, **given)


@pytest.mark.parametrize(("arguments", "expected"), TABLE)
def test_the_model_is_sent_as_the_dict_built_before_it(
    arguments: dict[str, Any], expected: JsonObject
) -> None:
    assert sent_object(_built(arguments)) == SAME | expected


@pytest.mark.parametrize(("arguments", "expected"), TABLE)
def test_the_signature_covers_exactly_the_bytes_sent(
    arguments: dict[str, Any], expected: JsonObject
) -> None:
    private, public = signing.generate_key()
    unsigned = _built(arguments | {"key_id": "k1"})
    signed = signing.sign_command(unsigned, private)
    received = orjson.loads(encode_command(signed))
    assert {k: v for k, v in received.items() if k != "sig"} == SAME | expected | {"key_id": "k1"}
    assert signing.verify(received, signing.load_public_key(public))
    # read back by the contract, it is sent as it came: nothing added, nothing lost
    assert sent_object(Command.model_validate(received)) == received
    tampered = received | {"reason": "changed"}
    assert not signing.verify(tampered, signing.load_public_key(public))


def test_a_signed_model_verifies_where_the_daemon_reads_it() -> None:
    private, public = signing.generate_key()
    command = signed_model(
        "start", "checkout", private_key=private, key_id="k1", actor="ana", plan=DEFAULT_PLAN
    )
    assert command.sig is not None
    assert command.key_id == "k1"
    assert signing.verify(orjson.loads(encode_command(command)), signing.load_public_key(public))


def test_a_pipeline_command_signs_as_a_command_does() -> None:
    private, public = signing.generate_key()
    command = PipelineCommand(
        type="pipeline",
        v=1,
        id=ID,
        ts=TS,
        action="start",
        flag="checkout",
        pipeline={"name": "p"},
        actor="ana",
        reason="",
        key_id="k1",
    )
    received = orjson.loads(encode_command(signing.sign_command(command, private)))
    assert set(received) == {*SAME, "action", "pipeline", "actor", "reason", "key_id", "sig"}
    assert signing.verify(received, signing.load_public_key(public))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"action": "start"}, "start needs a plan"),
        ({"action": "pause", "plan": DEFAULT_PLAN}, "a plan goes with start, not pause"),
        ({"action": "pause", "to_end": True}, "--to-end goes with promote, not pause"),
        ({"action": "abort", "at": AT}, "--at goes with start, not abort"),
        ({"action": "explode"}, "unknown action 'explode'"),
        ({"action": "pause", "key_id": "k" * 65}, "invalid command: key_id"),
        ({"action": "pause", "environment": "no spaces"}, "invalid command: environment"),
    ],
)
def test_the_arguments_are_checked_as_before(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        _built(arguments)


def test_a_published_schema_lists_the_signed_fields_where_the_message_declared_them() -> None:
    fields = ["v", "id", "ts", "actor", "reason", "key_id", "sig", "type", "flag", "applied"]
    assert published_order(fields, "flag") == [
        *("v", "id", "ts", "type", "flag", "actor", "reason", "applied", "key_id", "sig")
    ]
    required = Command.model_json_schema()["required"]
    assert required == ["v", "id", "ts", "type", "action", "flag", "actor"]
