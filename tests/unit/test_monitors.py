"""Monitor webhook payloads: what each shape means, and the reasons for refusing one."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.messages import MonitorAlert
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
        (bu("acknowledged"), None),
    ],
)
def test_betteruptime_events(payload: dict[str, Any], status: str | None) -> None:
    signal = parse_betteruptime(payload)
    if status is None:
        assert signal is None
        return
    assert signal == MonitorSignal("betteruptime", "4242", status, "77", "api: Status 503")  # type: ignore[arg-type]


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
