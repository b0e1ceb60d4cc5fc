"""Typed arm values from the plan to apps: flag state, signature, SDK, provider, OFREP tag."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from controller.adapters.ofrep.snapshot import Snapshot
from controller.core.reading.views import FlagStates, FlagStateView
from controller.core.rollouts.plan import Plan, parse_plan
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.trust.signing import StateSigner, StateVerifier, generate_key
from controller.core.wire import flagstates
from controller.core.wire.bucketing import assign
from controller.core.wire.evaluation import evaluate
from controller.core.wire.messages import Arm, FlagState
from controller.daemon.outputs.rendering import flag_state_fields
from controller.sdk.events import EventEmitter
from controller.sdk.flags import FlagBook, FlagClient
from controller.sdk.measure import Flags
from controller.sdk.openfeature import RolloutProvider

NOW = datetime(2026, 11, 23, tzinfo=UTC)
RANKERS = {"type": "string", "control": "v1-ranker", "treatment": "v2-ranker"}
UNITS = [f"user-{i}" for i in range(200)]


def rollout(values: object = None, phase: Phase = Phase.RUNNING) -> Rollout:
    data: dict[str, Any] = {"stages": [{"percent": 40}, {"percent": 100}]}
    if values is not None:
        data["values"] = values
    plan: Plan = parse_plan(data)
    return Rollout(
        flag="ranker",
        rollout_id="r-1",
        plan=plan,
        phase=phase,
        stage=0,
        stage_started_at=NOW,
        salt="pepper",
        flag_version=3,
        started_at=NOW,
        updated_at=NOW,
    )


def message(fields: dict[str, Any]) -> FlagState:
    return FlagState.model_validate({"type": "flag_state", "v": 1, "id": "m", "ts": 0, **fields})


def test_a_plan_without_values_makes_the_same_state_as_before() -> None:
    assert "values" not in flag_state_fields(rollout())
    assert "values" not in flag_state_fields(rollout({"type": "boolean"}))
    view = FlagStateView.model_validate(flag_state_fields(rollout()))
    assert "values" not in view.served()


def test_declared_values_travel_signed_and_a_changed_value_is_refused() -> None:
    key, public = generate_key()
    signer = StateSigner(key, "c1")
    verifier = StateVerifier({"c1": public})
    fields = signer.sign(flag_state_fields(rollout(RANKERS)))
    assert fields["values"] == RANKERS
    assert flagstates.signed_bytes(fields, "c1").startswith(b'["rollout-controller/flag-state/3",')
    state = message(fields)
    assert verifier.problem(state) is None
    served = FlagStateView.model_validate(fields).served()
    assert served["values"] == RANKERS
    assert verifier.problem(message(served)) is None
    swapped = {**RANKERS, "control": "v2-ranker"}
    assert verifier.problem(message({**fields, "values": swapped})) == "bad_signature"
    assert verifier.problem(message({**fields, "values": None})) == "bad_signature"
    book = FlagBook([message({**fields, "values": swapped})], keys={"c1": public})
    assert book.state("ranker") is None
    assert book.rejected == 1


@pytest.mark.parametrize(
    "values",
    [
        {"type": "string", "control": "a", "treatment": 1},
        {"type": "number", "control": 1, "treatment": 1e300},
        {"type": "object", "control": {}, "treatment": {"a": "x" * 5000}},
        {"type": "bytes", "control": "a", "treatment": "b"},
    ],
)
def test_a_flag_state_with_bad_values_is_refused_at_the_edge(values: dict[str, Any]) -> None:
    fields = flag_state_fields(rollout())
    with pytest.raises(ValueError, match="values"):
        message({**fields, "values": values})
    client = FlagClient()
    client._receive(message(fields).model_dump_json().encode())
    client._receive(orjson.dumps(message(fields).model_dump(mode="json") | {"values": values}))
    assert client.invalid == 1
    assert client.state("ranker") is not None


@pytest.mark.parametrize(
    "values",
    [
        b'{"type": "number", "control": 1, "treatment": 1' + b"0" * 400 + b"}",
        b'{"type": "object", "control": {}, "treatment": {"n": -1' + b"0" * 4000 + b"}}",
        b'{"type": "string", "control": "\\ud800", "treatment": "b"}',
        b'{"type": "object", "control": {"\\udfff": 1}, "treatment": {}}',
    ],
    ids=["huge-integer", "huge-integer-in-object", "lone-surrogate", "lone-surrogate-key"],
)
def test_crafted_values_on_the_topic_are_counted_invalid_and_the_state_held_stays(
    values: bytes,
) -> None:
    fields = message(flag_state_fields(rollout(RANKERS))).model_dump(mode="json")
    good = orjson.dumps(fields)
    crafted = good.replace(orjson.dumps(fields["values"]), values)
    assert crafted != good
    client = FlagClient()
    client._receive(good)
    client._receive(crafted)
    assert client.invalid == 1
    assert client.value("ranker", "u1", "none") in ("v1-ranker", "v2-ranker")


def test_the_evaluation_serves_the_arms_value_and_a_default_of_another_type() -> None:
    state = message(flag_state_fields(rollout(RANKERS)))
    book = FlagBook([state])
    for unit in UNITS:
        arm = assign("ranker", "pepper", unit, 40.0)
        want = "v2-ranker" if arm is Arm.TREATMENT else "v1-ranker"
        found = evaluate("ranker", state, unit)
        assert (found.value, found.variant, found.value_type) == (want, arm.value, "string")
        assert book.value("ranker", unit, "none") == want
        assert book.value("ranker", unit, False) is False  # a boolean asked of a string flag
        assert book.value("ranker", unit, 0) == 0
    assert book.value("other", "u1", "none") == "none"  # unknown flag
    assert book.value("ranker", "", "none") == "none"  # no unit
    killed = message(flag_state_fields(rollout(RANKERS, Phase.ROLLED_BACK)))
    assert FlagBook([killed]).value("ranker", "u1", "none") == "v1-ranker"  # control's value


def test_a_flag_without_values_serves_booleans_as_before() -> None:
    book = FlagBook([message(flag_state_fields(rollout()))])
    for unit in UNITS[:50]:
        treated = assign("ranker", "pepper", unit, 40.0) is Arm.TREATMENT
        assert book.value("ranker", unit, False) is treated
        assert book.value("ranker", unit, "x") == "x"
        assert book.evaluate("ranker", unit).value is treated


def test_measure_hands_the_served_value_to_the_block() -> None:
    numbers = {"type": "number", "control": 10, "treatment": 2.5}
    flags = Flags(FlagClient(states=[message(flag_state_fields(rollout(numbers)))]), EventEmitter())
    for unit in UNITS[:50]:
        measured = flags.measure("ranker", unit)
        with measured as arm:
            assert measured.value == (2.5 if arm is Arm.TREATMENT else 10)
        assert flags.value("ranker", unit, 0.0) == measured.value


@pytest.fixture
def domain() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    api.clear_providers()


def _client(domain: str, values: object) -> Any:
    flags = Flags(FlagClient(states=[message(flag_state_fields(rollout(values)))]), EventEmitter())
    flags.book.mark_ready()
    api.set_provider_and_wait(RolloutProvider(flags), domain)
    return api.get_client(domain)


def test_the_provider_resolves_a_string_flag_and_refuses_other_types(domain: str) -> None:
    client = _client(domain, RANKERS)
    for unit in UNITS[:50]:
        ctx = EvaluationContext(targeting_key=unit)
        arm = assign("ranker", "pepper", unit, 40.0)
        details = client.get_string_details("ranker", "none", ctx)
        want = "v2-ranker" if arm is Arm.TREATMENT else "v1-ranker"
        assert (details.value, details.variant, details.reason) == (want, arm.value, Reason.SPLIT)
        for wrong in (
            client.get_boolean_details("ranker", True, ctx),
            client.get_integer_details("ranker", 7, ctx),
            client.get_float_details("ranker", 7.5, ctx),
            client.get_object_details("ranker", {"d": 1}, ctx),
        ):
            assert wrong.error_code == ErrorCode.TYPE_MISMATCH
            assert wrong.reason == Reason.ERROR
            assert wrong.value in (True, 7, 7.5, {"d": 1})
            assert "serves string values" in (wrong.error_message or "")


@pytest.mark.parametrize(
    ("values", "asks", "default"),
    [
        ({"type": "number", "control": 1, "treatment": 3}, "integer", 0),
        ({"type": "number", "control": 1, "treatment": 3}, "float", 0.0),
        ({"type": "number", "control": 0.5, "treatment": 2.5}, "float", 0.0),
        ({"type": "number", "control": 1.0, "treatment": 3.0}, "float", 0.0),
        ({"type": "number", "control": 1.0, "treatment": 3.0}, "integer", 0),  # whole: either
        ({"type": "object", "control": {"n": 1}, "treatment": {"n": [2]}}, "object", {}),
        ({"type": "boolean", "control": True, "treatment": False}, "boolean", True),
    ],
)
def test_the_provider_resolves_numbers_objects_and_booleans(
    domain: str, values: dict[str, Any], asks: str, default: object
) -> None:
    client = _client(domain, values)
    get = getattr(client, f"get_{asks}_details")
    for unit in UNITS[:50]:
        treated = assign("ranker", "pepper", unit, 40.0) is Arm.TREATMENT
        details = get("ranker", default, EvaluationContext(targeting_key=unit))
        assert details.error_code is None, details.error_message
        assert details.value == values["treatment" if treated else "control"]
        assert type(details.value) is type(default)


def test_a_fraction_is_no_integer(domain: str) -> None:
    client = _client(domain, {"type": "number", "control": 0.5, "treatment": 2.5})
    details = client.get_integer_details("ranker", 7, EvaluationContext(targeting_key="u1"))
    assert (details.value, details.error_code) == (7, ErrorCode.TYPE_MISMATCH)


def test_a_flag_without_values_still_resolves_as_boolean_and_arm_name(domain: str) -> None:
    client = _client(domain, None)
    ctx = EvaluationContext(targeting_key="u1")
    arm = assign("ranker", "pepper", "u1", 40.0)
    assert client.get_boolean_value("ranker", False, ctx) is (arm is Arm.TREATMENT)
    assert client.get_string_value("ranker", "none", ctx) == arm.value
    assert client.get_object_details("ranker", {}, ctx).error_code == ErrorCode.TYPE_MISMATCH


def test_the_ofrep_tag_changes_with_the_values() -> None:
    def tag(values: object) -> bytes:
        view = FlagStateView.model_validate(flag_state_fields(rollout(values)))
        return Snapshot.of(FlagStates([view])).tag

    assert tag(RANKERS) != tag(None)
    assert tag(RANKERS) != tag({**RANKERS, "treatment": "v3-ranker"})
    assert tag(None) == tag({"type": "boolean"})


def test_a_disabled_flag_serves_controls_value() -> None:
    state = message(flag_state_fields(rollout(RANKERS, Phase.ABORTED)))
    assert state.status in flagstates.SERVES_CONTROL
    found = evaluate("ranker", state, "u1")
    assert (found.value, found.variant) == ("v1-ranker", "control")
