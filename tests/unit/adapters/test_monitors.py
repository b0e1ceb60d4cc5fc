"""Monitor webhook payloads: what each shape means, and the reasons for refusing one."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.wire.messages import MonitorAlert
from controller.integrations.monitors import (
    MonitorSignal,
    PayloadError,
    bounded_id,
    parse_betteruptime,
    parse_generic,
    signal_fields,
)


def bu(event: str, **data: Any) -> dict[str, Any]:
    incident: dict[str, Any] = {
        "id": "77",
        "type": "incident",
        "attributes": {"name": "api", "cause": "Status 503", "extra": 1},
        "relationships": {"monitor": {"data": {"id": 4242, "type": "monitor"}}},
    }
    return {"event": event, "data": {**incident, **data}, "unknown_top_level": True}


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (bu("started"), "down"),
        (bu("resolved"), "up"),
        (bu("reopened"), "down"),
        (bu("acknowledged"), None),
    ],
)
def test_betteruptime_events(payload: dict[str, Any], status: str | None) -> None:
    signal = parse_betteruptime(payload)
    if status is None:
        assert signal is None
        return
    assert signal is not None
    assert (signal.source, signal.monitor, signal.status, signal.incident_id) == (
        "betteruptime",
        "4242",
        status,
        "77",
    )
    assert signal.summary == "api: Status 503"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([], "JSON object"),
        ({"event": "started"}, "data"),
        (bu("exploded"), "event"),
        (bu("started", type="monitor"), "type"),
        (bu("started", relationships={}), "monitor"),
        (bu("started", id="x" * 129), "incident id"),
        (bu("started", id="  "), "incident id"),
        (bu("started", id=True), "data.id"),
        (bu("started", id=None), "data.id"),
    ],
)
def test_betteruptime_refusals_name_the_problem(payload: object, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        parse_betteruptime(payload)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"monitor": "m", "status": "down", "incident_id": "i"}, ("m", "down", "i")),
        ({"monitor": "m", "status": "up"}, ("m", "up", "delivery-1")),
    ],
)
def test_generic_payloads(payload: dict[str, Any], expected: tuple[str, str, str]) -> None:
    signal = parse_generic(payload, delivery_id="delivery-1")
    assert (signal.monitor, signal.status, signal.incident_id) == expected


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"monitor": "m", "status": "sideways"}, "status"),
        ({"status": "down"}, "monitor"),
        ({"monitor": "", "status": "down"}, "monitor"),
        ({"monitor": "m", "status": "down", "surprise": 1}, "surprise"),
        ({"monitor": "m", "status": "down", "incident_id": "   "}, "incident_id"),
        ({"monitor": "m", "status": "down", "incident_id": True}, "incident_id"),
        ({"monitor": "m", "status": "down", "incident_id": 7.5}, "incident_id"),
        ({"monitor": "m", "status": "down", "incident_id": "i" * 129}, "incident_id"),
        ("down", "JSON object"),
    ],
)
def test_generic_refusals_name_the_problem(payload: object, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        parse_generic(payload, delivery_id="d")


def test_a_redelivery_has_the_same_id_and_each_status_its_own() -> None:
    down = parse_betteruptime(bu("started"))
    assert down == parse_betteruptime(bu("started"))
    up = parse_betteruptime(bu("resolved"))
    assert down is not None
    assert up is not None
    assert down.message_id == parse_betteruptime(bu("started")).message_id  # type: ignore[union-attr]
    assert down.message_id != up.message_id


def test_a_signal_is_a_valid_monitor_message() -> None:
    signal = parse_generic({"monitor": "m", "status": "down"}, delivery_id="d")
    message = MonitorAlert.model_validate({**signal_fields(signal), "ts": 0})
    assert (message.monitor, message.status, message.incident_id) == ("m", "down", "d")


@pytest.mark.parametrize("form", [9001, "9001", " 9001 ", "9001\n"])
def test_an_incident_id_is_one_id_whatever_form_it_is_sent_in(form: object) -> None:
    generic = parse_generic(
        {"monitor": "m", "status": "down", "incident_id": form}, delivery_id="d"
    )
    better = parse_betteruptime(bu("started", id=form))
    assert better is not None
    assert (generic.incident_id, better.incident_id) == ("9001", "9001")
    assert (
        generic.message_id
        == parse_generic(
            {"monitor": "m", "status": "down", "incident_id": "9001"}, delivery_id="other"
        ).message_id
    )
    assert better.message_id == parse_betteruptime(bu("started", id="9001")).message_id  # type: ignore[union-attr]


def test_a_betteruptime_monitor_id_is_one_id_whatever_form_it_is_sent_in() -> None:
    as_text = bu("started", relationships={"monitor": {"data": {"id": " 4242 "}}})
    assert parse_betteruptime(as_text) == parse_betteruptime(bu("started"))


@pytest.mark.parametrize(
    "header", ["r" * 129, "r" * 300, "é-accented", "tab\tinside", "\udcff-undecodable", ""]
)
def test_a_long_or_odd_delivery_id_becomes_a_bounded_stable_one(header: str) -> None:
    signal = parse_generic({"monitor": "m", "status": "down"}, delivery_id=header)
    assert signal.incident_id == bounded_id(header)
    assert signal.incident_id.startswith("sha256-")
    assert len(signal.incident_id) <= 128
    assert (
        signal.message_id
        == parse_generic({"monitor": "m", "status": "down"}, delivery_id=header).message_id
    )
    MonitorAlert.model_validate({**signal_fields(signal), "ts": 0})


def test_a_short_printable_delivery_id_is_kept_as_sent() -> None:
    assert bounded_id(" req-42 ") == "req-42"
    assert bounded_id("r" * 128) == "r" * 128
    assert bounded_id("r" * 128) != bounded_id("r" * 129)


def reopened(delivery_id: str = "d-1", **attributes: object) -> MonitorSignal:
    payload = bu("reopened")
    payload["data"]["attributes"].update(attributes)
    signal = parse_betteruptime(payload, delivery_id=delivery_id)
    assert signal is not None
    return signal


def test_a_reopen_is_a_new_down_not_a_redelivery_of_the_start() -> None:
    started = parse_betteruptime(bu("started"))
    assert started is not None
    reopen = reopened(resolved_at="2026-11-22T11:00:00Z")
    assert (reopen.status, reopen.incident_id) == ("down", started.incident_id)
    assert reopen.message_id != started.message_id
    # the start's id is what it always was: deliveries already claimed stay claimed
    assert started.occurrence == ""


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        # a redelivery of one reopen carries the same payload
        ({"resolved_at": "T1"}, {"resolved_at": "T1"}, True),
        # a later reopen follows a later resolution
        ({"resolved_at": "T1"}, {"resolved_at": "T2"}, False),
        (
            {"reopened_at": "R1", "resolved_at": "T1"},
            {"reopened_at": "R2", "resolved_at": "T1"},
            False,
        ),
        ({"updated_at": "U1"}, {"updated_at": "U1", "resolved_at": "T9"}, True),
        # no timestamp: the delivery id decides (a redelivery keeps its X-Request-Id)
        (
            {"resolved_at": None, "delivery_id": "a"},
            {"resolved_at": None, "delivery_id": "a"},
            True,
        ),
        (
            {"resolved_at": None, "delivery_id": "a"},
            {"resolved_at": None, "delivery_id": "b"},
            False,
        ),
        ({"resolved_at": 17, "delivery_id": "a"}, {"resolved_at": "  ", "delivery_id": "a"}, True),
        # a hostile timestamp is bounded, and still tells reopens apart
        ({"resolved_at": "x" * 10_000}, {"resolved_at": "y" * 10_000}, False),
    ],
)
def test_which_reopens_are_one_signal(
    first: dict[str, Any], second: dict[str, Any], same: bool
) -> None:
    one = reopened(first.pop("delivery_id", "d-1"), **first)
    other = reopened(second.pop("delivery_id", "d-2"), **second)
    assert (one.message_id == other.message_id) is same
    assert len(one.occurrence) <= 200
    MonitorAlert.model_validate({**signal_fields(one), "ts": 0})


def test_odd_timestamps_on_a_started_incident_are_no_reason_to_refuse_it() -> None:
    payload = bu("started")
    payload["data"]["attributes"].update(resolved_at=["odd"], updated_at={"x": 1})
    signal = parse_betteruptime(payload)
    assert signal is not None
    assert signal.message_id == parse_betteruptime(bu("started")).message_id  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("action", "sent", "kept"),
    [(None, "kill", None), ("kill", "kill", None), ("hold", "hold", "hold")],
)
def test_a_generic_down_may_hold_instead_of_kill(
    action: str | None, sent: str, kept: str | None
) -> None:
    payload = {"monitor": "deploy-api", "status": "down", "incident_id": "deploy-9"}
    signal = parse_generic(payload | ({"action": action} if action else {}), delivery_id="d")
    fields = signal_fields(signal)
    # a kill's message is what it always was; a hold's says so
    assert (signal.action, fields.get("action")) == (sent, kept)
    assert MonitorAlert.model_validate({**fields, "ts": 0}).action == sent


def test_a_hold_and_a_kill_of_one_incident_are_two_signals() -> None:
    payload = {"monitor": "deploy-api", "status": "down", "incident_id": "deploy-9"}
    held = parse_generic({**payload, "action": "hold"}, delivery_id="d")
    killed = parse_generic(payload, delivery_id="d")
    assert held.message_id != killed.message_id


def test_an_unknown_action_is_refused_naming_it() -> None:
    with pytest.raises(PayloadError, match="action"):
        parse_generic({"monitor": "m", "status": "down", "action": "explode"}, delivery_id="d")
