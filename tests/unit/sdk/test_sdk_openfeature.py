"""The OpenFeature provider over flag states held in memory: values, reasons, hook, track."""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagEvaluationOptions, Reason
from openfeature.provider import FeatureProvider, ProviderStatus
from openfeature.provider.in_memory_provider import InMemoryProvider
from openfeature.track import TrackingEventDetails

from controller.core.rollouts.plan import parse_plan
from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm, FlagState, FlagStatus, event_adapter
from controller.sdk.events import EventEmitter, stable_id
from controller.sdk.exposures import Exposures
from controller.sdk.flags import FlagClient
from controller.sdk.measure import Flags
from controller.sdk.openfeature import IDEMPOTENCY_KEY, RolloutProvider
from tests.unit.core.wire.test_rings import rollout as ring_rollout
from tests.unit.core.wire.test_rings import state_of

FLAG = "checkout.new-flow"
UNITS = [f"user-{i}" for i in range(300)]


def _state(version: int, percent: float, status: FlagStatus = FlagStatus.ROLLING_OUT) -> FlagState:
    return FlagState(
        type="flag_state",
        v=1,
        id=f"s{version}",
        ts=1,
        flag=FLAG,
        version=version,
        status=status,
        percent=percent,
        salt="salt",
    )


def _flags(*states: FlagState, loaded: bool = True) -> Flags:
    flags = Flags(FlagClient(states=states), EventEmitter())
    if loaded:
        flags.book.mark_ready()
    return flags


def _events(flags: Flags) -> list[dict[str, Any]]:
    return [
        event_adapter.validate_json(v).model_dump(mode="json", exclude_none=True)
        for _, v in flags.events._queue
    ]


@pytest.fixture
def domain() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    api.clear_providers()


def _client(domain: str, provider: FeatureProvider) -> OpenFeatureClient:
    api.set_provider_and_wait(provider, domain)
    return api.get_client(domain)


def test_boolean_and_string_flags_resolve_the_arm_with_version_and_percent(domain: str) -> None:
    flags = _flags(_state(4, 30.0))
    client = _client(domain, RolloutProvider(flags))
    for unit in UNITS:
        ctx = EvaluationContext(targeting_key=unit)
        want = assign(FLAG, "salt", unit, 30.0)
        details = client.get_boolean_details(FLAG, False, ctx)
        assert details.value is (want is Arm.TREATMENT)
        assert (details.variant, details.reason) == (want.value, Reason.SPLIT)
        assert details.flag_metadata["version"] == 4
        assert details.flag_metadata["percent"] == 30.0
        assert client.get_string_value(FLAG, "none", ctx) == want.value


def test_a_flag_serving_control_to_all_is_disabled(domain: str) -> None:
    client = _client(domain, RolloutProvider(_flags(_state(9, 50.0, FlagStatus.KILLED))))
    details = client.get_boolean_details(FLAG, True, EvaluationContext(targeting_key="u1"))
    assert (details.value, details.variant, details.reason) == (False, "control", Reason.DISABLED)
    assert details.flag_metadata["version"] == 0


@pytest.mark.parametrize(
    ("kind", "default"),
    [("boolean", True), ("string", "fallback"), ("integer", 7), ("float", 2.5), ("object", {})],
)
def test_an_unknown_flag_is_flag_not_found_with_the_default(
    domain: str, kind: str, default: Any
) -> None:
    """FLAG_NOT_FOUND, not DEFAULT: what a multi-provider reads as "ask the next provider".

    The SDK's own in-memory provider answers an unknown flag the same way.
    """
    ctx = EvaluationContext(targeting_key="u1")
    client = _client(domain, RolloutProvider(_flags(_state(1, 50.0))))
    details = getattr(client, f"get_{kind}_details")("other", default, ctx)
    assert (details.value, details.reason) == (default, Reason.ERROR)
    assert details.error_code == ErrorCode.FLAG_NOT_FOUND
    assert details.variant is None
    reference = _client(f"{domain}-reference", InMemoryProvider({}))
    known = getattr(reference, f"get_{kind}_details")("other", default, ctx)
    assert (known.value, known.reason, known.error_code) == (
        details.value,
        details.reason,
        details.error_code,
    )


def test_a_missing_targeting_key_is_an_error_resolution_not_an_exception(domain: str) -> None:
    client = _client(domain, RolloutProvider(_flags(_state(1, 50.0))))
    details = client.get_boolean_details(FLAG, True, EvaluationContext())
    assert (details.value, details.reason) == (True, Reason.ERROR)
    assert details.error_code == ErrorCode.TARGETING_KEY_MISSING
    assert client.get_integer_details(FLAG, 3, EvaluationContext("u1")).error_code == (
        ErrorCode.TYPE_MISMATCH
    )


def test_states_not_loaded_are_an_error_and_readiness_is_announced_later(domain: str) -> None:
    flags = _flags(_state(1, 50.0), loaded=False)
    provider = RolloutProvider(flags, ready_timeout=0.01)
    ready = threading.Event()
    api.set_provider(provider, domain)
    client = api.get_client(domain)
    client.add_handler(ProviderEvent.PROVIDER_READY, lambda _: ready.set())
    details = client.get_boolean_details(FLAG, True, EvaluationContext(targeting_key="u1"))
    assert (details.value, details.reason) == (True, Reason.ERROR)
    assert details.error_code in (ErrorCode.PROVIDER_NOT_READY, ErrorCode.GENERAL)
    assert provider.resolve_boolean_details(FLAG, True, EvaluationContext("u1")).error_code == (
        ErrorCode.PROVIDER_NOT_READY
    )
    flags.book.mark_ready()
    assert ready.wait(10)
    assert client.get_provider_status() == ProviderStatus.READY
    assert client.get_boolean_details(FLAG, True, EvaluationContext("u1")).reason == Reason.SPLIT


def test_a_newer_state_is_announced_as_a_configuration_change(domain: str) -> None:
    flags = _flags(_state(1, 50.0))
    client = _client(domain, RolloutProvider(flags))
    changes: queue.Queue[EventDetails] = queue.Queue()
    client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, changes.put)
    flags.book.apply(_state(2, 60.0))
    flags.book.apply(_state(1, 10.0))  # stale: no event
    flags.book.apply(_state(3, 70.0))
    got = [changes.get(timeout=10), changes.get(timeout=10)]  # handlers run on a pool
    assert sorted((c.flags_changed, c.metadata["version"]) for c in got) == [
        ([FLAG], 2),
        ([FLAG], 3),
    ]
    assert changes.empty()


def test_the_hook_exposes_once_per_unit_and_version_and_track_converts(domain: str) -> None:
    flags = _flags(_state(1, 50.0))
    client = _client(domain, RolloutProvider(flags))
    ctx = EvaluationContext(targeting_key="u1")
    for _ in range(3):
        client.get_boolean_value(FLAG, False, ctx)
    client.get_boolean_value("unknown", False, ctx)  # FLAG_NOT_FOUND: no exposure
    flags.book.apply(_state(2, 50.0))
    client.get_string_value(FLAG, "x", ctx)
    client.track("purchase", ctx, TrackingEventDetails(value=12.5))
    client.track("purchase", EvaluationContext(targeting_key="never-exposed"))
    arm = assign(FLAG, "salt", "u1", 50.0).value
    events = [
        (e["type"], e["arm"], e["flag_version"], e.get("value"), e.get("name"))
        for e in _events(flags)
    ]
    assert events == [
        ("exposure", arm, 1, None, None),
        ("exposure", arm, 2, None, None),
        ("conversion", arm, 2, 12.5, "purchase"),
    ]


def test_every_evaluation_exposes_when_asked_and_keys_make_ids_stable(domain: str) -> None:
    flags = _flags(_state(1, 50.0))
    client = _client(domain, RolloutProvider(flags, exposures="every"))
    ctx = EvaluationContext(targeting_key="u1")
    options = FlagEvaluationOptions(hook_hints={IDEMPOTENCY_KEY: "run-1"})
    client.get_boolean_value(FLAG, False, ctx)
    client.get_boolean_value(FLAG, False, ctx)
    client.get_boolean_value(FLAG, False, ctx, options)
    client.get_boolean_value(FLAG, False, ctx, options)  # a retry: same id, not sent again
    details = TrackingEventDetails(value=1.0, attributes={IDEMPOTENCY_KEY: "run-1"})
    client.track("done", ctx, details)
    client.track("done", ctx, details)
    events = _events(flags)
    assert [e["type"] for e in events] == ["exposure"] * 3 + ["conversion"]
    assert events[2]["id"] == stable_id("run-1", FLAG, "exposure")
    assert flags.events.repeated == 2


def test_no_exposures_when_turned_off(domain: str) -> None:
    flags = _flags(_state(1, 50.0))
    client = _client(domain, RolloutProvider(flags, exposures="off"))
    assert client.get_boolean_details(FLAG, False, EvaluationContext("u1")).reason == Reason.SPLIT
    assert _events(flags) == []


def test_exposure_memory_is_bounded_and_forgets_the_least_recent_unit() -> None:
    memory = Exposures(max_units=2)
    assert memory.record("a", FLAG, Arm.CONTROL, 1)
    assert memory.record("b", FLAG, Arm.CONTROL, 1)
    assert not memory.record("a", FLAG, Arm.CONTROL, 1)  # "a" is now the most recent
    assert memory.record("c", FLAG, Arm.CONTROL, 1)  # evicts "b"
    assert memory.of("b") == {}
    assert memory.of("a") == {FLAG: (Arm.CONTROL, 1, None)}


def test_provider_measure_reports_the_outcome_of_the_evaluated_arm(domain: str) -> None:
    flags = _flags(_state(5, 50.0))
    provider = RolloutProvider(flags)
    client = _client(domain, provider)
    ctx = EvaluationContext(targeting_key="u1")
    details = client.get_boolean_details(FLAG, False, ctx)
    with pytest.raises(RuntimeError), provider.measure(details, "u1", key="k") as arm:
        raise RuntimeError("the step failed")
    unknown = client.get_boolean_details("unknown", False, ctx)
    with provider.measure(unknown, "u1") as served:
        pass
    events = _events(flags)
    assert arm.value == details.variant
    assert served is Arm.CONTROL
    assert [(e["type"], e["arm"], e["flag_version"], e.get("error")) for e in events] == [
        ("exposure", details.variant, 5, None),
        ("request", details.variant, 5, True),
    ]
    assert events[1]["id"] == stable_id("k", FLAG, "request")


def test_hostile_contexts_and_values_become_errors_or_nothing_never_bad_events(
    domain: str,
) -> None:
    flags = _flags(_state(1, 50.0))
    provider = RolloutProvider(flags)
    client = _client(domain, provider)
    long_unit = EvaluationContext(targeting_key="u" * 257)
    details = client.get_boolean_details(FLAG, True, long_unit)
    assert (details.value, details.error_code) == (True, ErrorCode.INVALID_CONTEXT)
    ctx = EvaluationContext(targeting_key="u1")
    client.get_boolean_value(FLAG, False, ctx)  # one exposure
    for value in (float("nan"), float("inf"), 1e12, -1e12):
        client.track("purchase", ctx, TrackingEventDetails(value=value))
    client.track("purchase", long_unit, TrackingEventDetails(value=1.0))
    client.track("purchase", ctx, TrackingEventDetails(value=-3.0))
    assert [(e["type"], e.get("value")) for e in _events(flags)] == [
        ("exposure", None),
        ("conversion", -3.0),
    ]
    assert provider.untracked == 5


class Incomparable:
    """A key that cannot even be compared (as a numpy array cannot, to a string)."""

    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        raise TypeError("no comparison")


@pytest.mark.parametrize(
    "key",
    [42, ["u1"], {"u": 1}, b"u1", 4.5, True, Incomparable()],
    ids=["int", "list", "dict", "bytes", "float", "bool", "incomparable"],
)
def test_a_targeting_key_that_is_not_a_string_never_raises_into_the_app(
    domain: str, key: Any
) -> None:
    flags = _flags(_state(1, 50.0))
    provider = RolloutProvider(flags)
    client = _client(domain, provider)
    ctx = EvaluationContext(targeting_key=key)
    details = client.get_boolean_details(FLAG, True, ctx)
    assert (details.value, details.error_code) == (True, ErrorCode.INVALID_CONTEXT)
    client.track("purchase", ctx, TrackingEventDetails(value=1.0))
    provider.track("purchase", ctx, TrackingEventDetails(value=1.0))
    # Not even odd details or a missing context make it raise
    provider.track("purchase", ctx, "not details")  # type: ignore[arg-type]
    assert _events(flags) == []
    assert provider.untracked == 3


PLUS_7 = timezone(timedelta(hours=7))
NAIVE_2023_12_31_23H = datetime(2023, 12, 31, 23)  # noqa: DTZ001 (naive on purpose)
NAIVE_2024_01_01 = datetime(2024, 1, 1)  # noqa: DTZ001 (naive on purpose)


@pytest.mark.parametrize(
    ("rule", "unit", "attributes", "reached"),
    [
        ('targetingKey == "vip-1"', "vip-1", {}, True),
        ('targetingKey == "vip-1"', "someone", {}, False),
        ('targetingKey starts_with "vip-"', "vip-9", {"targetingKey": "no"}, True),
        ('targetingKey in ["a", "vip-2"]', "vip-2", {}, True),
        ('signup >= date("2024-01-01")', "u", {"signup": datetime(2024, 3, 1, tzinfo=UTC)}, True),
        # Without a zone a datetime is in UTC, as rule text without an offset is.
        ('signup >= date("2024-01-01")', "u", {"signup": NAIVE_2023_12_31_23H}, False),
        ('signup >= date("2024-01-01")', "u", {"signup": NAIVE_2024_01_01}, True),
        (
            'signup < date("2024-01-01")',
            "u",
            {"signup": datetime(2024, 1, 1, 6, 59, 59, tzinfo=PLUS_7)},
            True,
        ),
        (
            'signup == date("2024-05-06T01:02:03.0045Z")',
            "u",
            {"signup": datetime(2024, 5, 6, 1, 2, 3, 4500, tzinfo=UTC)},
            True,
        ),
        ('signup > date("2024-01-01")', "u", {"signup": "2024-02-01"}, True),
    ],
)
def test_rules_read_the_targeting_key_and_datetimes_of_the_context(
    domain: str, rule: str, unit: str, attributes: dict[str, Any], reached: bool
) -> None:
    """A ring's rule on ``targetingKey`` or on a datetime attribute, through OpenFeature."""
    plan = parse_plan(
        {
            "name": "rings",
            "limits": {"error_rate": 0.01},
            "stages": [{"audience": rule, "percent": 100}, {"percent": 100}],
        }
    )
    flags = _flags(state_of(ring_rollout(plan, 0)))
    client = _client(domain, RolloutProvider(flags))
    details = client.get_boolean_details("checkout", False, EvaluationContext(unit, attributes))
    assert details.error_code is None, details.error_message
    want = (True, Reason.TARGETING_MATCH) if reached else (False, Reason.TARGETING_MATCH)
    assert (details.value, details.reason) == want
