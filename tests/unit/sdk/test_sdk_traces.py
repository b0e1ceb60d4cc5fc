"""Flag evaluations on the app's own traces, recorded through the real OpenTelemetry SDK.

Spans come from ``opentelemetry-sdk``'s tracer and are read back from its
``InMemorySpanExporter``: the events asserted are the ones an app exporting
OTLP would send. The last tests run the SDK in a child process, where
OpenTelemetry cannot be imported or is merely installed, and check that the
SDK never loads it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import Tracer

from controller.core.wire import ArmValues, ErrorCode, Evaluation, Reason
from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm, FlagState, FlagStatus
from controller.sdk import traces
from controller.sdk.events import EventEmitter
from controller.sdk.flags import FlagBook, FlagClient
from controller.sdk.measure import Flags
from controller.sdk.openfeature import RolloutProvider
from controller.sdk.traces import EVENT, evaluation_attributes, of_evaluation

ROOT = Path(__file__).resolve().parents[3]
FLAG = "checkout.new-flow"
UNITS = [f"user-{i}" for i in range(40)]


def _state(
    version: int = 4,
    percent: float = 30.0,
    status: FlagStatus = FlagStatus.ROLLING_OUT,
    values: ArmValues | None = None,
) -> FlagState:
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
        values=values,
    )


def _book(*states: FlagState) -> FlagBook:
    book = FlagBook(states)
    book.mark_ready()
    return book


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Tracer:
    """A tracer of the real SDK, not installed globally: spans become current through it."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test")


def _events(exporter: InMemorySpanExporter, name: str = "GET /checkout") -> list[dict[str, Any]]:
    [span] = [s for s in exporter.get_finished_spans() if s.name == name]
    return _span_events(span)


def _span_events(span: ReadableSpan) -> list[dict[str, Any]]:
    assert all(e.name == EVENT for e in span.events)
    return [dict(e.attributes or {}) for e in span.events]


# -- the attributes, from an evaluation ------------------------------------------------------

TYPED = ArmValues(type="object", control={"rows": 10}, treatment={"rows": 20})

CASES = [
    pytest.param(
        Evaluation(FLAG, Arm.TREATMENT, 4, Reason.SPLIT),
        "user-1",
        True,
        {
            "feature_flag.result.variant": "treatment",
            "feature_flag.result.value": "true",
            "feature_flag.result.reason": "split",
            "feature_flag.context.id": "user-1",
            "feature_flag.version": "4",
        },
        id="split-treatment",
    ),
    pytest.param(
        Evaluation(FLAG, Arm.CONTROL, 12, Reason.TARGETING_MATCH, values=TYPED),
        "user-2",
        {"rows": 10},
        {
            "feature_flag.result.variant": "control",
            "feature_flag.result.value": '{"rows":10}',
            "feature_flag.result.reason": "targeting_match",
            "feature_flag.context.id": "user-2",
            "feature_flag.version": "12",
        },
        id="targeted-outside-typed",
    ),
    pytest.param(
        Evaluation(FLAG, Arm.CONTROL, 0, Reason.DISABLED),
        "user-3",
        False,
        {
            "feature_flag.result.variant": "control",
            "feature_flag.result.value": "false",
            "feature_flag.result.reason": "disabled",
            "feature_flag.context.id": "user-3",
            "feature_flag.version": "0",
        },
        id="disabled",
    ),
    pytest.param(
        Evaluation(FLAG, Arm.CONTROL, 0, Reason.ERROR, error=ErrorCode.FLAG_NOT_FOUND, detail="x"),
        "user-4",
        "fallback",
        {
            "feature_flag.result.variant": "control",
            "feature_flag.result.value": '"fallback"',
            "feature_flag.result.reason": "error",
            "feature_flag.context.id": "user-4",
            "error.type": "flag_not_found",
            "error.message": "x",
        },
        id="unknown-flag-no-version",
    ),
    pytest.param(
        Evaluation(FLAG, Arm.CONTROL, 0, Reason.ERROR, error=ErrorCode.INVALID_CONTEXT),
        "u" * 257,
        object(),
        {
            "feature_flag.result.variant": "control",
            "feature_flag.result.reason": "error",
            "error.type": "invalid_context",
        },
        id="unit-too-long-value-without-json",
    ),
]


@pytest.mark.parametrize(("found", "unit", "value", "expected"), CASES)
def test_an_evaluation_becomes_the_conventions_attributes(
    found: Evaluation, unit: object, value: object, expected: dict[str, str]
) -> None:
    common = {"feature_flag.key": FLAG, "feature_flag.provider.name": "rollout-controller"}
    assert of_evaluation(found, unit, value) == common | expected


def test_attributes_leave_out_what_is_missing() -> None:
    got = evaluation_attributes("f", reason="UNKNOWN", unit=None, variant=None, version=None)
    assert got == {
        "feature_flag.key": "f",
        "feature_flag.provider.name": "rollout-controller",
        "feature_flag.result.reason": "unknown",
    }


# -- the SDK's own evaluations ----------------------------------------------------------------


def test_each_evaluation_in_a_span_adds_one_event_with_arm_unit_and_version(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    book = _book(_state(version=4, percent=30.0))
    with tracer.start_as_current_span("GET /checkout"):
        served = [book.arm(FLAG, unit) for unit in UNITS]
    events = _events(exporter)
    assert len(events) == len(UNITS)
    for unit, (arm, version), event in zip(UNITS, served, events, strict=True):
        assert arm is assign(FLAG, "salt", unit, 30.0)
        assert event["feature_flag.key"] == FLAG
        assert event["feature_flag.context.id"] == unit
        assert event["feature_flag.result.variant"] == arm.value
        assert event["feature_flag.result.value"] == json.dumps(arm is Arm.TREATMENT)
        assert event["feature_flag.version"] == str(version) == "4"
        assert event["feature_flag.result.reason"] == "split"


def test_value_records_what_it_returned_and_errors_their_type(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    values = ArmValues(type="string", control="v1-ranker", treatment="v2-ranker")
    book = _book(_state(version=7, percent=100.0, values=values))
    with tracer.start_as_current_span("GET /checkout"):
        assert book.value(FLAG, "user-1", "none") == "v2-ranker"
        assert book.value("unknown.flag", "user-1", "none") == "none"
        # At 100% nothing is bucketed: no targeting key is needed.
        assert book.value(FLAG, "", "none") == "v2-ranker"
    ranked, unknown, keyless = _events(exporter)
    assert ranked["feature_flag.result.value"] == '"v2-ranker"'
    assert ranked["feature_flag.version"] == "7"
    assert (unknown["error.type"], unknown["feature_flag.result.value"]) == (
        "flag_not_found",
        '"none"',
    )
    assert "feature_flag.version" not in unknown
    assert (keyless["feature_flag.result.reason"], "error.type" in keyless) == ("static", False)
    assert "feature_flag.context.id" not in keyless


async def test_measure_records_the_evaluation_on_the_handlers_span(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    flags = Flags(FlagClient(states=[_state(version=5, percent=100.0)]), EventEmitter())
    with tracer.start_as_current_span("GET /checkout"):
        async with flags.measure(FLAG, "user-9") as arm:
            assert arm is Arm.TREATMENT
    [event] = _events(exporter)
    assert (event["feature_flag.result.variant"], event["feature_flag.version"]) == (
        "treatment",
        "5",
    )


def test_no_event_outside_a_recording_span_or_when_turned_off(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    book = _book(_state())
    assert book.arm(FLAG, "user-1")[1] == 4  # no current span: nothing to record on
    unsampled = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    with unsampled.start_as_current_span("sampled out") as span:
        assert not span.is_recording()
        assert traces.current_span() is None
        book.arm(FLAG, "user-1")
    book.traces = False
    with tracer.start_as_current_span("GET /checkout"):
        book.arm(FLAG, "user-1")
    book.traces = True
    with tracer.start_as_current_span("GET /next"):
        book.arm(FLAG, "user-1")
    assert _events(exporter) == []
    assert len(_events(exporter, "GET /next")) == 1


class _BrokenSpan:
    def is_recording(self) -> bool:
        return True

    def add_event(self, name: str, attributes: object) -> None:
        raise RuntimeError("the tracer is broken")


def test_a_failing_tracer_never_fails_the_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    import opentelemetry.trace  # noqa: PLC0415

    monkeypatch.setattr(opentelemetry.trace, "get_current_span", _BrokenSpan)
    assert traces.current_span() is not None
    book = _book(_state(percent=100.0))
    assert book.arm(FLAG, "user-1") == (Arm.TREATMENT, 4)
    assert not traces.record(book.evaluate(FLAG, "user-1"), "user-1", True)


# -- the OpenFeature provider -----------------------------------------------------------------


@pytest.fixture
def domain() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    api.clear_providers()


def _flags(*states: FlagState) -> Flags:
    flags = Flags(FlagClient(states=states), EventEmitter())
    flags.book.mark_ready()
    return flags


def test_the_provider_records_each_resolution_once_with_its_version(
    domain: str, tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    api.set_provider_and_wait(RolloutProvider(_flags(_state(version=6, percent=50.0))), domain)
    client = api.get_client(domain)
    with tracer.start_as_current_span("GET /checkout"):
        for unit in UNITS:
            client.get_boolean_value(FLAG, False, EvaluationContext(targeting_key=unit))
        client.get_string_value(FLAG, "none", EvaluationContext(targeting_key="user-1"))
        client.get_integer_value(FLAG, 3, EvaluationContext(targeting_key="user-1"))
        client.get_boolean_value("unknown.flag", False, EvaluationContext(targeting_key="x"))
    events = _events(exporter)
    assert len(events) == len(UNITS) + 3  # one per resolution: the book records none of them
    for unit, event in zip(UNITS, events[: len(UNITS)], strict=True):
        arm = assign(FLAG, "salt", unit, 50.0)
        assert event["feature_flag.context.id"] == unit
        assert event["feature_flag.result.variant"] == arm.value
        assert event["feature_flag.result.value"] == json.dumps(arm is Arm.TREATMENT)
        assert event["feature_flag.version"] == "6"
        assert event["feature_flag.provider.name"] == "rollout-controller"
    as_string, mismatch, unknown = events[len(UNITS) :]
    assert as_string["feature_flag.result.value"] == json.dumps(assign(FLAG, "salt", "user-1", 50))
    assert (mismatch["error.type"], mismatch["feature_flag.result.value"]) == ("type_mismatch", "3")
    assert (unknown["error.type"], unknown["feature_flag.result.reason"]) == (
        "flag_not_found",
        "error",
    )
    assert "feature_flag.version" not in unknown


def test_a_provider_made_with_traces_off_records_nothing(
    domain: str, tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    flags = _flags(_state())
    api.set_provider_and_wait(RolloutProvider(flags, traces=False), domain)
    with tracer.start_as_current_span("GET /checkout"):
        for unit in UNITS[:5]:
            api.get_client(domain).get_boolean_value(FLAG, False, EvaluationContext(unit))
    assert _events(exporter) == []
    assert len(flags.events._queue) > 0  # the exposures went out all the same


# -- without OpenTelemetry ---------------------------------------------------------------------

APP = """
import json, sys
from importlib.abc import MetaPathFinder

class Blocker(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "opentelemetry":
            raise ImportError(name + " is not installed")
        return None

if sys.argv[1] == "blocked":
    sys.meta_path.insert(0, Blocker())
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from controller.core.wire.messages import FlagState
from controller.sdk import EventEmitter, Flags, FlagClient
from controller.sdk.openfeature import RolloutProvider
state = FlagState(type="flag_state", v=1, id="s", ts=1, flag="f", version=3,
                  status="rolling_out", percent=100.0, salt="salt")
flags = Flags(FlagClient(states=[state]), EventEmitter())
flags.book.mark_ready()
arm, version = flags.arm("f", "user-1")
with flags.measure("f", "user-1") as measured:
    pass
api.set_provider_and_wait(RolloutProvider(flags))
value = api.get_client().get_boolean_value("f", False, EvaluationContext("user-1"))
loaded = sorted(m for m in sys.modules if m.partition(".")[0] == "opentelemetry")
from importlib.util import find_spec  # a top-level package's spec: found, not imported
try:
    installed = find_spec("opentelemetry") is not None
except ImportError:
    installed = False
print(json.dumps({"served": [arm.value, version, measured.value, value], "loaded": loaded,
                  "installed": installed}))
"""


@pytest.mark.parametrize("otel", ["blocked", "installed"])
def test_an_app_without_tracing_never_loads_opentelemetry(otel: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", APP, otel],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    served = {"served": ["treatment", 3, "treatment", True], "loaded": []}
    assert result == served | {"installed": otel == "installed"}
