"""The three forms of an evaluation, in both generations of attributes, and a real TracingHook's."""

from __future__ import annotations

import pytest

from controller.core.telemetry import (
    Evaluation,
    SpanEvent,
    Spans,
    decode_traces_json,
    evaluation_in,
    evaluations_in,
)
from tests.support.otel.otlp_exports import Recorder, evaluate, openfeature_client, traces_json
from tests.unit.core.telemetry.builders import (
    CHILD,
    ROOT,
    T0,
    TRACE,
    evaluation_attributes,
    evaluation_event,
    record,
    span,
)

VALUE = "feature_flag.result.value"


def expected(**changes: object) -> Evaluation:
    base: dict[str, object] = {
        "flag": "checkout",
        "variant": "treatment",
        "unit": "u1",
        "version": None,
        "trace_id": TRACE,
        "span_id": ROOT,
        "time_ns": T0 + 1_000_000,
        "provider": None,
        "reason": None,
        "error_type": None,
        "form": "span_event",
    }
    base.update(changes)
    return Evaluation(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "found"),
    [
        (evaluation_event(), [expected()]),
        (
            evaluation_event(
                extra={
                    "feature_flag.version": 7,
                    "feature_flag.provider.name": "ofrep",
                    "feature_flag.result.reason": "targeting_match",
                    "error.type": "general",
                }
            ),
            [
                expected(
                    version="7", provider="ofrep", reason="targeting_match", error_type="general"
                )
            ],
        ),
        (
            SpanEvent(
                "feature_flag",
                T0 + 1_000_000,
                {
                    "feature_flag.key": "checkout",
                    "feature_flag.variant": "control",
                    "feature_flag.provider_name": "flagd",
                },
            ),
            [expected(variant="control", unit=None, provider="flagd")],
        ),
        (evaluation_event(variant=None, unit=None), [expected(variant=None, unit=None)]),
        (evaluation_event(at=0), [expected(time_ns=T0)]),
        (SpanEvent("feature_flag.evaluation", T0, {"feature_flag.key": 7}), []),
        (SpanEvent("feature_flag.evaluation", T0, {"feature_flag.key": ""}), []),
        (SpanEvent("exception", T0, {"feature_flag.key": "checkout"}), []),
    ],
    ids=[
        "semconv",
        "all-fields",
        "old-generation",
        "bare",
        "no-time",
        "key-not-text",
        "empty-key",
        "other-event",
    ],
)
def test_span_events_of_either_name_are_evaluations(
    event: SpanEvent, found: list[Evaluation]
) -> None:
    assert evaluations_in(span(events=(event,))) == found


@pytest.mark.parametrize(
    ("attributes", "variant"),
    [
        ({VALUE: True}, "true"),
        ({VALUE: False}, "false"),
        ({VALUE: "true"}, "true"),
        ({VALUE: 3}, "3"),
        ({VALUE: "blue"}, "blue"),
        ({VALUE: 0.5}, None),
        ({VALUE: ""}, None),
        ({"feature_flag.result.variant": "treatment", VALUE: False}, "treatment"),
        ({"feature_flag.variant": "on", VALUE: False}, "on"),
    ],
    ids=[
        "true",
        "false",
        "text-true",
        "integer",
        "string",
        "float-names-nothing",
        "empty",
        "variant-first",
        "old-variant-first",
    ],
)
def test_without_a_variant_the_value_stands_for_it(
    attributes: dict[str, str | bool | int | float], variant: str | None
) -> None:
    """The semantic conventions give the value when no variant is named (Java's SDK does)."""
    event = evaluation_event(variant=None, extra=attributes)
    assert evaluations_in(span(events=(event,))) == [expected(variant=variant)]


def test_an_evaluation_span_belongs_to_its_parent() -> None:
    child = span(
        CHILD, ROOT, name="feature_flag.evaluation", kind=1, attributes=evaluation_attributes()
    )
    assert evaluations_in(child) == [expected(form="span", span_id=ROOT, time_ns=T0)]
    root = span(CHILD, name="feature_flag.evaluation", attributes=evaluation_attributes())
    assert evaluations_in(root) == [expected(form="span", span_id="", time_ns=T0)]
    named_only = span(CHILD, ROOT, name="feature_flag.evaluation")
    assert evaluations_in(named_only) == []


def test_a_span_may_carry_several_evaluations() -> None:
    events = (evaluation_event("a"), SpanEvent("other", T0, {}), evaluation_event("b"))
    assert [e.flag for e in evaluations_in(span(events=events))] == ["a", "b"]


def test_a_log_record_named_feature_flag_evaluation_is_one() -> None:
    found = evaluation_in(record(evaluation_attributes(variant="control")))
    assert found == expected(form="log", variant="control", time_ns=T0 + 2_000_000)
    assert evaluation_in(record(evaluation_attributes(), event_name="app.click")) is None
    assert evaluation_in(record({"feature_flag.result.variant": "on"})) is None


def test_openfeatures_tracing_hook_writes_what_is_read() -> None:
    app = Recorder()
    client = openfeature_client({"checkout": "treatment", "search": "control"})
    with app.request():
        evaluate(client, "checkout", "u-42")
        evaluate(client, "search")
    spans = decode_traces_json(traces_json(app.spans()))
    assert isinstance(spans, Spans)
    [server] = spans.spans
    found = evaluations_in(server)
    assert [(e.flag, e.variant, e.unit, e.reason, e.form) for e in found] == [
        ("checkout", "treatment", "u-42", "static", "span_event"),
        ("search", "control", None, "static", "span_event"),
    ]
    assert {e.provider for e in found} == {"In-Memory Provider"}
    assert all(e.span_id == server.span_id and e.trace_id == server.trace_id for e in found)
    assert all(server.start_ns <= e.time_ns <= server.end_ns for e in found)
