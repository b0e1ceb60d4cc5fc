"""Every command ``rolloutctl`` signs is built as its contract's model and signed over the
object it is sent as: that object verifies with the operator's public key, meets its
contract, and holds the same keys and values the JSON objects built before the models held.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from controller.core.machine import IngestCommand
from controller.core.release import PipelineCommand
from controller.core.rollouts.plan import DEFAULT_PLAN
from controller.core.trust import AppKeyCommand, digest, signing
from controller.core.wire import Command, SegmentCommand, SignedCommand, sent_object
from controller.ctl.operate import app_keys, command_model, ingest, pipelines, segments
from controller.ctl.usage import UsageError

DIGEST = "ab" * 32
SECRET = "rc_app_" + "s" * 43
PLAN = DEFAULT_PLAN.model_dump(mode="json")
WHO: dict[str, Any] = {"actor": "ana", "reason": "", "key_id": "k1"}
"""Who signs every command below."""
DRAWN = {"id", "ts", "sig", "app_key"}
"""What each command draws when it is built or signed, left out of the comparisons."""

# (what, the unsigned model, its contract, the object the dict-building ctl sent, less DRAWN)
TABLE: list[tuple[str, Callable[[], SignedCommand], type[SignedCommand], dict[str, Any]]] = [
    (
        "a start by apply",
        lambda: command_model(
            "start", "checkout", actor="ana", key_id="k1", plan=DEFAULT_PLAN, applied=DIGEST
        ),
        Command,
        {"type": "command", "v": 1, "action": "start", "flag": "checkout"}
        | WHO
        | {"plan": PLAN, "applied": DIGEST},
    ),
    (
        "a proposal, signed",
        lambda: command_model(
            "pause",
            "checkout",
            actor="ana",
            key_id="k1",
            expect_version=4,
            expect_rollout_id="r-1",
            expect_stage=0,
        ),
        Command,
        {"type": "command", "v": 1, "action": "pause", "flag": "checkout"}
        | WHO
        | {"expect_version": 4, "expect_rollout_id": "r-1", "expect_stage": 0},
    ),
    (
        "a rule segment",
        lambda: segments.commands_for(
            "pros", action="put", actor="ana", key_id="k1", rule='plan in ["pro"]'
        )[0],
        SegmentCommand,
        {"type": "segment_command", "v": 1, "action": "put", "segment": "pros"}
        | WHO
        | {"rule": {"attribute": "plan", "op": "in", "value": ["pro"]}},
    ),
    (
        "a segment deleted",
        lambda: segments.commands_for("pros", action="delete", actor="ana", key_id="k1")[0],
        SegmentCommand,
        {"type": "segment_command", "v": 1, "action": "delete", "segment": "pros"} | WHO,
    ),
    (
        "a pipeline by apply",
        lambda: pipelines.command_of(
            "checkout", {"name": "p"}, actor="ana", key_id="k1", applied=DIGEST
        ),
        PipelineCommand,
        {"type": "pipeline", "v": 1, "action": "start", "flag": "checkout"}
        | {"pipeline": {"name": "p"}}
        | WHO
        | {"applied": DIGEST},
    ),
    (
        "an app key made",
        lambda: app_keys.command_of(
            "create",
            "web",
            actor="ana",
            key_id="k1",
            secret=SECRET,
            scopes=["events", "evaluate", "events"],
            environment="prod",
        ),
        AppKeyCommand,
        {"type": "app_key", "v": 1, "action": "create", "target": "web"}
        | WHO
        | {"scopes": ["evaluate", "events"], "client": False, "secret_sha256": digest(SECRET)}
        | {"environment": "prod"},
    ),
    (
        "an app key revoked",
        lambda: app_keys.command_of("revoke", "web", actor="ana", key_id="k1"),
        AppKeyCommand,
        {"type": "app_key", "v": 1, "action": "revoke", "target": "web"} | WHO,
    ),
    (
        "an ingest choice",
        lambda: ingest.command_of(
            "accept_gap", partitions=[3, 1, 3], actor="ana", key_id="k1", topic="spans"
        ),
        IngestCommand,
        {"type": "ingest", "v": 1, "action": "accept_gap", "partitions": [1, 3]}
        | WHO
        | {"topic": "spans"},
    ),
]
IDS = [f"unit-{i:06d}" for i in range(30_000)]


@pytest.mark.parametrize(("what", "built", "contract", "expected"), TABLE)
def test_a_signed_model_is_sent_as_the_object_its_signature_covers(
    what: str,
    built: Callable[[], SignedCommand],
    contract: type[SignedCommand],
    expected: dict[str, Any],
) -> None:
    private, public = signing.generate_key()
    command = built()
    assert isinstance(command, contract), what
    signed = signing.sign_command(command, private)
    received = orjson.loads(orjson.dumps(sent_object(signed)))  # the Kafka value, read back
    assert signing.verify(received, signing.load_public_key(public)), what
    assert sent_object(contract.model_validate(received)) == received
    assert {k: v for k, v in received.items() if k not in DRAWN} == expected
    assert not signing.verify(received | {"reason": "changed"}, signing.load_public_key(public))


def test_each_part_of_an_id_list_is_signed_on_its_own() -> None:
    private, public = signing.generate_key()
    made = segments.commands_for(
        "beta", action="put", actor="ana", key_id="k1", ids=IDS, applied=DIGEST
    )
    received = [sent_object(signing.sign_command(c, private)) for c in made]
    assert len(received) > 1
    assert all(signing.verify(c, signing.load_public_key(public)) for c in received)
    parts = [SegmentCommand.model_validate(c).ids for c in received]
    assert [p.part for p in parts if p] == list(range(len(received)))
    assert {c["applied"] for c in received} == {DIGEST}
    assert len({c["id"] for c in received}) == len(received)


@pytest.mark.parametrize(
    ("built", "said"),
    [
        (lambda: pipelines.command_of("checkout@dev", {}, actor="a", key_id="k"), "flag"),
        (lambda: app_keys.command_of("revoke", "", actor="a", key_id="k"), "target"),
        (
            lambda: ingest.command_of("reread", partitions=[-1], actor="a", key_id="k"),
            "partitions",
        ),
        (
            lambda: segments.commands_for("a b", action="delete", actor="a", key_id="k"),
            "segment",
        ),
        (
            lambda: command_model("pause", "checkout", actor="a", key_id="k", applied="x"),
            "applied",
        ),
    ],
)
def test_a_field_the_contract_refuses_is_a_usage_error_naming_it(
    built: Callable[[], object], said: str
) -> None:
    with pytest.raises(UsageError, match=f"invalid .*{said}"):
        built()


def test_app_key_and_ingest_schemas_still_list_type_first() -> None:
    for contract in (AppKeyCommand, IngestCommand):
        schema = contract.model_json_schema()
        assert list(schema["properties"])[:4] == ["type", "v", "id", "ts"]
        assert list(schema["properties"])[-2:] == ["key_id", "sig"]
        assert schema["required"][:4] == ["type", "v", "id", "ts"]
