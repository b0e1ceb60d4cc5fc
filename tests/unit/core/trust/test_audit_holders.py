"""The holder of the key that signed each exported command, as of the command's time."""

from __future__ import annotations

import json

import pytest

from controller.core.trust import (
    AuditEvent,
    KeyHolders,
    PublishedRecord,
    audit_event,
    holders_of_alert,
    with_holder,
)

T0 = 1767225600000
BOOK = KeyHolders(
    current={"ops-1": "omar", "new-1": "nina"},
    history=((T0, {"ops-1": "ana", "old-1": "olga"}), (T0 + 1000, {"ops-1": "ben"})),
)


def _record(data: object, *, kind: str = "command", ts: int = T0 + 500) -> PublishedRecord:
    value = json.dumps(data).encode()
    return PublishedRecord(kind, f"rollout.{kind}s", 0, 3, ts, b"f", value)  # type: ignore[arg-type]


def _event(data: object, *, kind: str = "command", ts: int = T0 + 500) -> AuditEvent:
    event = audit_event(_record(data, kind=kind, ts=ts))
    assert isinstance(event, AuditEvent), event
    return event


@pytest.mark.parametrize(
    ("key_id", "at", "want"),
    [
        ("ops-1", T0 - 1, ("omar", "settings")),  # before any alert: today's keys
        ("ops-1", T0, ("ana", "operator_keys")),  # an alert at the command's millisecond
        ("ops-1", T0 + 999, ("ana", "operator_keys")),
        ("ops-1", T0 + 1000, ("ben", "operator_keys")),  # reassigned by the next reload
        ("old-1", T0 + 500, ("olga", "operator_keys")),  # removed since: still named
        ("old-1", T0 + 1500, None),  # gone from the keys then and now
        ("new-1", T0 + 1500, ("nina", "settings")),  # not named by the alert before it
        ("nobody", T0 + 500, None),
    ],
)
def test_a_keys_holder_is_the_one_the_last_alert_before_names_else_todays(
    key_id: str, at: int, want: tuple[str, str] | None
) -> None:
    assert BOOK.holder_at(key_id, at) == want


def test_a_command_event_names_its_signers_holder_and_where_it_was_read() -> None:
    event = with_holder(_event({"type": "command", "key_id": "ops-1", "actor": "x"}), BOOK)
    assert (event.signerholder, event.signerholderfrom) == ("ana", "operator_keys")
    assert event.data == {"type": "command", "key_id": "ops-1", "actor": "x"}  # as published
    line = json.loads(event.model_dump_json(exclude_none=True))
    assert line["signerholder"] == "ana"
    assert line["signerholderfrom"] == "operator_keys"


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ({"type": "command", "key_id": "nobody"}, "command"),  # a key no one holds
        ({"type": "command", "key_id": 7}, "command"),  # hostile: not a key id
        ({"type": "command"}, "command"),  # unsigned
        ({"type": "decision", "key_id": "ops-1"}, "decision"),  # not a command
    ],
)
def test_an_event_without_a_known_signer_is_left_as_it_is(data: object, kind: str) -> None:
    event = _event(data, kind=kind)
    assert with_holder(event, BOOK) == event
    assert "signerholder" not in event.model_dump_json(exclude_none=True)


@pytest.mark.parametrize(
    ("data", "want"),
    [
        (
            {"type": "alert", "kind": "operator_keys", "details": {"holders": {"a": "ana"}}},
            (T0, {"a": "ana"}),
        ),
        (  # a holder that is no name is left out, the others kept
            {"kind": "operator_keys", "details": {"holders": {"a": "ana", "b": 3, "c": ""}}},
            (T0, {"a": "ana"}),
        ),
        ({"kind": "operator_keys", "details": {"error": "bad key"}}, None),  # a failed reload
        ({"kind": "operator_keys", "details": {"holders": ["ana"]}}, None),
        ({"kind": "kill", "details": {"holders": {"a": "ana"}}}, None),
        ([1, 2], None),
    ],
)
def test_an_operator_keys_alert_names_the_holders_as_of_its_time(
    data: object, want: tuple[int, dict[str, str]] | None
) -> None:
    assert holders_of_alert(_record(data, kind="alert", ts=T0)) == want
