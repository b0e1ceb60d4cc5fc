"""The read side's models: what clients take for a decision or an alert, what is served."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from controller.core.reading.views import FlagStateView, RolloutStatus, describe
from controller.core.wire.messages import Alert, Decision, decision_or_alert
from tests.unit.core.machine.gate.test_gate import T0, rollout

ENVELOPE = {"v": 1, "id": "m1", "ts": 1_767_225_600_000}
DECISION = {**ENVELOPE, "type": "decision", "flag": "f", "kind": "gate", "action": "advance",
            "outcome": "applied"}  # fmt: skip
ALERT = {**ENVELOPE, "type": "alert", "flag": "f", "severity": "critical", "kind": "rollback",
         "summary": "rolled back"}  # fmt: skip


@pytest.mark.parametrize(
    ("message", "read"),
    [
        (DECISION, Decision),
        (ALERT, Alert),
        ({**DECISION, "ts": "2026-11-22T12:00:00Z"}, Decision),
        ({**DECISION, "type": "alert"}, None),  # a decision's fields under the alert type
        ({k: v for k, v in DECISION.items() if k != "id"}, None),  # no envelope
        ({**DECISION, "outcome": "maybe"}, None),
        ({**DECISION, "extra": 1}, None),
        ({**DECISION, "type": "flag_state"}, None),
        ({"type": "decision"}, None),
        ([DECISION], None),
        ("decision", None),
        (None, None),
    ],
)
def test_a_message_is_a_decision_or_an_alert_only_as_its_contract_says(
    message: Any, read: type | None
) -> None:
    found = decision_or_alert(message)
    assert (type(found) if found is not None else None) is read


def test_a_flag_state_is_served_without_a_signature_it_does_not_have() -> None:
    fields = {"flag": "f", "version": 3, "status": "rolling_out", "percent": 5.0, "salt": "s",
              "rollout_id": "r", "stage": 1}  # fmt: skip
    assert FlagStateView.model_validate(fields).served() == fields
    signed = {**fields, "key_id": "k1", "sig": "c2ln"}
    assert FlagStateView.model_validate(signed).served() == signed


def test_a_status_serves_the_fields_describe_gives_in_their_order_then_stale() -> None:
    shown = describe(rollout(), None, T0).served()
    status = RolloutStatus.model_validate({**shown, "stale": False})
    assert list(status.served()) == [*shown, "stale"]
    assert orjson.loads(orjson.dumps(status.served())) == {**shown, "stale": False}
    # A client reads a newer controller's answer: a field it does not know is ignored.
    assert RolloutStatus.model_validate({**status.served(), "new": 1}) == status
