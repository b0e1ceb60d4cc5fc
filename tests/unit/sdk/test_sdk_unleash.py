"""The exposure helper for Unleash-served apps: the arm served, the unit, the served version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from controller.core.rules.matching import IdSegments
from controller.core.wire.messages import Arm
from controller.sdk.unleash import UnleashExposures, managed_features, unit_of


@dataclass
class Fetched:
    """Shaped like the SDK's ``UnleashFetchedEvent``."""

    raw_features: str


def payload(version: str = "7", stickiness: str = "userId", **extra: Any) -> str:
    params = {
        "rollout": "25",
        "stickiness": stickiness,
        "groupId": "new-checkout",
        "rcFlag": "checkout",
        "rcFlagVersion": version,
        **extra,
    }
    features = [
        {"name": "new-checkout", "strategies": [{"name": "flexibleRollout", "parameters": params}]},
        {"name": "by-hand", "strategies": [{"name": "default", "parameters": {}}]},
    ]
    return orjson.dumps({"version": 2, "features": features}).decode()


class FakeClient:
    def __init__(self, served: bool) -> None:
        self.served = served

    def is_enabled(self, feature_name: str, context: dict[str, Any] | None = None) -> bool:
        return self.served

    def get_variant(
        self, feature_name: str, context: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {"name": "disabled", "enabled": False, "feature_enabled": self.served}


def helper() -> tuple[UnleashExposures, list[tuple[str, str, Arm, int]]]:
    emitted: list[tuple[str, str, Arm, int]] = []
    return UnleashExposures(lambda *e: emitted.append(e)), emitted


def test_each_evaluation_is_an_exposure_with_the_served_arm_and_version() -> None:
    exposures, emitted = helper()
    exposures.on_event(Fetched(payload("7")))
    assert exposures.wrap(FakeClient(True)).is_enabled("new-checkout", {"userId": "u1"})
    assert not exposures.wrap(FakeClient(False)).get_variant("new-checkout", {"userId": "u2"})[
        "feature_enabled"
    ]
    exposures.on_event(Fetched(payload("8")))  # the next fetch serves the next version
    exposures.wrap(FakeClient(True)).is_enabled("new-checkout", {"userId": "u3"})
    assert emitted == [
        ("checkout", "u1", Arm.TREATMENT, 7),
        ("checkout", "u2", Arm.CONTROL, 7),
        ("checkout", "u3", Arm.TREATMENT, 8),
    ]


def test_no_exposure_without_a_fetch_a_unit_or_a_controller_strategy() -> None:
    exposures, emitted = helper()
    flags = exposures.wrap(FakeClient(True))
    assert flags.is_enabled("new-checkout", {"userId": "u1"})  # nothing fetched yet
    exposures.on_event(Fetched(payload()))
    flags.is_enabled("new-checkout", {"sessionId": "s1"})  # sticky on userId: no unit
    flags.is_enabled("by-hand", {"userId": "u1"})  # not the controller's
    flags.is_enabled("new-checkout")
    assert emitted == []


def test_a_chained_callback_still_gets_every_event() -> None:
    seen: list[object] = []
    exposures = UnleashExposures(lambda *_: None, chain=seen.append)
    event = Fetched(payload())
    exposures.on_event(event)
    exposures.on_event("ready")
    assert seen == [event, "ready"]


@pytest.mark.parametrize(
    ("context", "stickiness", "unit"),
    [
        ({"userId": "u1", "sessionId": "s1"}, "default", "u1"),
        ({"sessionId": "s1"}, "default", "s1"),
        ({"properties": {"tenant": "t9"}}, "tenant", "t9"),
        ({"userId": 42}, "userId", "42"),
        ({"userId": True}, "userId", None),
        ({"userId": ""}, "userId", None),
        ({}, "default", None),
    ],
)
def test_the_unit_is_the_sticky_field(
    context: dict[str, Any], stickiness: str, unit: str | None
) -> None:
    assert unit_of(context, stickiness) == unit


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "not json",
        "[]",
        '{"features": "x"}',
        '{"features": [1, null, {"name": 5}]}',
        payload(version="-1"),
        payload(version="1.5"),
        payload(version="9" * 30),
        orjson.dumps({"features": [{"name": "f", "strategies": [{"parameters": []}]}]}).decode(),
    ],
)
def test_hostile_payloads_manage_nothing(raw: str) -> None:
    assert managed_features(raw) == {}


def test_exposed_returns_what_the_app_s_request_events_repeat() -> None:
    exposures, emitted = helper()
    exposures.on_event(Fetched(payload("7")))
    exposed = exposures.wrap(FakeClient(False)).exposed("new-checkout", {"userId": "u1"})
    assert exposed is not None
    assert (exposed.flag, exposed.unit, exposed.arm, exposed.flag_version) == emitted[0]
    assert exposures.wrap(FakeClient(True)).exposed("by-hand", {"userId": "u1"}) is None


TARGETING = orjson.dumps(
    [
        {"attribute": "country", "op": "==", "value": "TH"},
        [
            [{"attribute": "plan", "op": "==", "value": "staff"}, 100_000],
            [None, 25_000],
        ],
    ]
).decode()


@pytest.mark.parametrize(
    ("context", "cohort"),
    [
        ({"userId": "u1", "country": "TH", "plan": "staff"}, "carried"),
        ({"userId": "u1", "properties": {"country": "TH", "plan": "pro"}}, "compared"),
        ({"userId": "u1", "country": "TH"}, "compared"),
        ({"userId": "u1", "country": "US", "plan": "staff"}, "outside"),
        ({"userId": "u1"}, "outside"),
    ],
)
def test_a_targeted_rollouts_exposure_names_the_cohort_from_its_rings(
    context: dict[str, Any], cohort: str
) -> None:
    emitted: list[tuple[Any, ...]] = []
    exposures = UnleashExposures(lambda *e, **kw: emitted.append((*e, kw.get("cohort"))))
    exposures.on_event(Fetched(payload("7", rcTargeting=TARGETING)))
    exposed = exposures.wrap(FakeClient(False)).exposed("new-checkout", context)
    assert exposed is not None
    assert exposed.cohort == cohort
    assert emitted == [("checkout", "u1", Arm.CONTROL, 7, cohort)]


@pytest.mark.parametrize("targeting", ["{", "[1, 2]", '[null, [[null, "x"]]]', "[null, []]"])
def test_unreadable_rings_are_no_exposure_rather_than_a_wrong_cohort(targeting: str) -> None:
    assert "new-checkout" not in managed_features(payload("7", rcTargeting=targeting))


SEGMENT_RINGS = orjson.dumps(
    [
        None,
        [
            [{"attribute": "userId", "op": "in", "value": {"segment": "beta"}}, 100_000],
            [{"attribute": "country", "op": "==", "value": "TH"}, 25_000],
        ],
    ]
).decode()


@pytest.mark.parametrize(
    ("context", "cohort"),
    [
        ({"userId": "u1", "country": "TH"}, "carried"),
        ({"userId": "u2", "country": "TH"}, "compared"),
        ({"userId": "u2", "country": "US"}, "outside"),
    ],
)
def test_rings_naming_a_segment_take_the_cohort_from_the_app_s_segments(
    context: dict[str, Any], cohort: str
) -> None:
    emitted: list[str] = []
    book = IdSegments({"beta": {"u1"}})
    exposures = UnleashExposures(lambda *e, **kw: emitted.append(kw["cohort"]), segments=book)
    exposures.on_event(Fetched(payload("7", rcTargeting=SEGMENT_RINGS)))
    exposed = exposures.wrap(FakeClient(True)).exposed("new-checkout", context)
    assert exposed is not None
    assert exposed.cohort == cohort
    assert emitted == [cohort]


def test_without_segments_rings_naming_one_are_served_but_not_exposed() -> None:
    exposures, emitted = helper()
    exposures.on_event(Fetched(payload("7", rcTargeting=SEGMENT_RINGS)))
    flags = exposures.wrap(FakeClient(True))
    assert flags.is_enabled("new-checkout", {"userId": "u1", "country": "TH"})
    assert flags.exposed("new-checkout", {"userId": "u1"}) is None
    assert emitted == []
