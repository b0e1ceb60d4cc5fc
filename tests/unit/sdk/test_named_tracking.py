"""Named conversions from apps: the SDK's ``conversion(name=...)`` and the
OpenFeature provider's ``track(name, ...)``, which carries the tracking event's name."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.track import TrackingEventDetails

from controller.core.wire.messages import Arm, event_adapter
from controller.sdk.events import EventEmitter, conversion_name_ok, stable_id
from controller.sdk.openfeature import IDEMPOTENCY_KEY, RolloutProvider
from tests.unit.sdk.test_sdk_openfeature import FLAG, _client, _events, _flags, _state


@pytest.fixture
def domain() -> Iterator[str]:
    yield "named-tracking"
    api.clear_providers()


def _sent(emitter: EventEmitter) -> list[dict[str, Any]]:
    return [
        event_adapter.validate_json(v).model_dump(mode="json", exclude_none=True)
        for _, v in emitter._queue
    ]


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("checkout_completed", True),
        ("order.paid:v2-eu", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("Checkout Completed", False),
        ("9lives", False),
        ("", False),
        ("ok\n", False),
        (None, False),
        (42, False),
    ],
)
def test_what_may_name_a_conversion(name: object, ok: bool) -> None:
    assert conversion_name_ok(name) is ok


def test_the_sdk_sends_a_named_conversion_and_drops_a_bad_name_as_rejected() -> None:
    emitter = EventEmitter()
    assert emitter.conversion(FLAG, "u1", Arm.TREATMENT, 3, value=9.5, name="checkout_completed")
    assert emitter.conversion(FLAG, "u1", Arm.TREATMENT, 3)
    assert emitter.conversion(FLAG, "u1", Arm.TREATMENT, 3, name="not a name") is None
    sent = [(e.get("name"), e.get("value")) for e in _sent(emitter)]
    assert sent == [("checkout_completed", 9.5), (None, None)]
    assert emitter.dropped == {"rejected": 1}


def test_a_keyed_conversion_s_id_holds_its_name_and_an_unnamed_one_s_is_as_before() -> None:
    emitter = EventEmitter()
    signup = emitter.conversion(FLAG, "u1", Arm.CONTROL, 1, key="run-1", name="signup")
    paid = emitter.conversion(FLAG, "u1", Arm.CONTROL, 1, key="run-1", name="paid")
    plain = emitter.conversion(FLAG, "u1", Arm.CONTROL, 1, key="run-1")
    assert len({signup, paid, plain}) == 3
    assert signup == stable_id("run-1", FLAG, "conversion", name="signup")
    assert plain == stable_id("run-1", FLAG, "conversion")
    assert emitter.conversion(FLAG, "u1", Arm.CONTROL, 1, key="run-1", name="paid") == paid
    assert emitter.repeated == 1


def test_track_carries_the_event_name_and_sends_a_bad_one_unnamed(
    domain: str, caplog: pytest.LogCaptureFixture
) -> None:
    flags = _flags(_state(2, 50.0))
    provider = RolloutProvider(flags)
    client = _client(domain, provider)
    ctx = EvaluationContext(targeting_key="u1")
    client.get_boolean_value(FLAG, False, ctx)
    client.track("checkout_completed", ctx, TrackingEventDetails(value=99.5))
    client.track("signup", ctx)
    with caplog.at_level(logging.WARNING, logger="controller.sdk.openfeature"):
        client.track("Checkout Completed", ctx, TrackingEventDetails(value=5.0))
        client.track("x" * 80, ctx)
    conversions = [(e.get("name"), e.get("value")) for e in _events(flags)[1:]]
    assert conversions == [
        ("checkout_completed", 99.5),
        ("signup", None),
        (None, 5.0),  # still a conversion, counted by every guardrail naming none
        (None, None),
    ]
    assert provider.unnamed == 2
    assert provider.untracked == 0
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1  # once, not per call
    assert "'Checkout Completed'" in warned[0]


def test_two_names_under_one_idempotency_key_are_two_conversions(domain: str) -> None:
    flags = _flags(_state(2, 50.0))
    client = _client(domain, RolloutProvider(flags))
    ctx = EvaluationContext(targeting_key="u1")
    client.get_boolean_value(FLAG, False, ctx)
    details = TrackingEventDetails(attributes={IDEMPOTENCY_KEY: "order-7"})
    for name in ("cart_viewed", "checkout_completed", "checkout_completed"):
        client.track(name, ctx, details)
    conversions = _events(flags)[1:]
    assert [e["name"] for e in conversions] == ["cart_viewed", "checkout_completed"]
    assert flags.events.repeated == 1
