"""Translation: units, versions, arms, outcomes, conversions and ids, table by table."""

from __future__ import annotations

import math
from hashlib import blake2b

import pytest

from controller.core.common import MAX_LATENCY_MS
from controller.core.rollouts import TelemetryPlan
from controller.core.telemetry import (
    FlagRules,
    Logs,
    Refusal,
    Spans,
    Translated,
    Translator,
    event_id,
    rules_of,
)
from controller.core.wire import ConversionIn, ExposureIn, RequestIn
from tests.unit.core.telemetry.builders import (
    CHILD,
    GRANDCHILD,
    ROOT,
    T0,
    T0_MS,
    TRACE,
    evaluation_attributes,
    evaluation_event,
    lookup,
    record,
    rules,
    span,
)


def translate(*spans_: object, known: FlagRules | None = None) -> Translated:
    translator = Translator(lookup(known or rules()))
    return translator.spans(Spans(list(spans_)), T0_MS)  # type: ignore[arg-type]


def exposures(out: Translated) -> list[ExposureIn]:
    return [e for e in out.events if isinstance(e, ExposureIn)]


def requests(out: Translated) -> list[RequestIn]:
    return [e for e in out.events if isinstance(e, RequestIn)]


def conversions(out: Translated) -> list[ConversionIn]:
    return [e for e in out.events if isinstance(e, ConversionIn)]


def test_an_evaluation_on_a_server_span_is_one_exposure_and_one_request() -> None:
    server = span(attributes={"http.response.status_code": 200}, events=(evaluation_event(),))
    out = translate(server)
    assert out.events == [
        ExposureIn(
            v=1,
            id=event_id("x", TRACE, ROOT, "checkout"),
            ts=T0_MS + 1,
            flag="checkout",
            unit="u1",
            arm="treatment",
            flag_version=3,
        ),
        RequestIn(
            v=1,
            id=event_id("r", TRACE, ROOT, "checkout"),
            ts=T0_MS + 25,
            flag="checkout",
            unit="u1",
            arm="treatment",
            flag_version=3,
            error=False,
            latency_ms=25.0,
        ),
    ]
    assert (out.refused, out.request_level, out.guarded, out.unmatched) == ([], 0, 0, 0)


def test_event_ids_are_the_kind_and_the_blake2b_of_trace_span_and_flag() -> None:
    digest = blake2b(f"{TRACE}|{ROOT}|checkout".encode(), digest_size=16).hexdigest()
    assert event_id("x", TRACE, ROOT, "checkout") == f"otlp-x-{digest}"
    assert event_id("r", TRACE, ROOT, "checkout") == f"otlp-r-{digest}"
    ids = {event_id(k, TRACE, ROOT, "f") for k in ("x", "r", "c:a", "c:b")}
    ids |= {event_id("x", TRACE, CHILD, "f"), event_id("x", TRACE, ROOT, "g")}
    assert len(ids) == 6


def test_the_same_export_translated_twice_gives_the_same_ids() -> None:
    batch = [
        span(events=(evaluation_event(), evaluation_event("search"))),
        span(CHILD, ROOT, name="checkout_completed", attributes={"value": 3}),
    ]
    known = [rules(conversions=frozenset({"checkout_completed"})), rules("search")]
    first = Translator(lookup(*known)).spans(Spans(batch), T0_MS)
    again = Translator(lookup(*known)).spans(Spans(batch), T0_MS + 60_000)
    assert len(first.events) == 5
    assert [e.id for e in first.events] == [e.id for e in again.events]
    assert len({e.id for e in first.events}) == 5


UNIT_CASES = {
    "context-id": (evaluation_event(unit="u1"), {}, {}, "u1", 0),
    "span-attribute": (
        evaluation_event(unit=None),
        {"enduser.id": "s1"},
        {"enduser.id": "r1"},
        "s1",
        0,
    ),
    "resource-attribute": (evaluation_event(unit=None), {}, {"enduser.id": "r1"}, "r1", 0),
    "integer-unit": (evaluation_event(unit=None), {"enduser.id": 42}, {}, "42", 0),
    "request-level": (evaluation_event(unit=None), {}, {}, f"trace:{TRACE}", 1),
    "unit-too-long": (evaluation_event(unit="u" * 257), {"enduser.id": "s1"}, {}, "s1", 0),
    "empty-unit-falls-through": (
        evaluation_event(unit=None),
        {"enduser.id": ""},
        {},
        f"trace:{TRACE}",
        1,
    ),
}


@pytest.mark.parametrize(
    ("event", "on_span", "on_resource", "unit", "request_level"),
    UNIT_CASES.values(),
    ids=UNIT_CASES.keys(),
)
def test_the_unit_falls_back_from_the_context_id_to_the_span_the_resource_and_the_request(
    event: object,
    on_span: dict[str, object],
    on_resource: dict[str, object],
    unit: str,
    request_level: int,
) -> None:
    server = span(events=(event,), attributes=on_span, resource=on_resource)  # type: ignore[arg-type]
    out = translate(server, known=rules(unit_attribute="enduser.id"))
    assert {e.unit for e in out.events} == {unit}
    assert out.request_level == request_level


TIMELINE = ((1, T0_MS - 100_000), (2, T0_MS - 10_000), (3, T0_MS + 10_000))
VERSION_CASES = {
    "explicit": ("7", (), 7, None),
    "explicit-beats-timeline": ("1", TIMELINE, 1, None),
    "not-a-number": ("v7", (), None, "bad_version"),
    "past-int32": ("2147483648", (), None, "bad_version"),
    "negative": ("-1", (), None, "bad_version"),
    "no-timeline": (None, (), 3, None),
    "in-force": (None, TIMELINE, 2, None),
    "after-a-change": (None, ((1, T0_MS - 100_000), (2, T0_MS - 1_000)), None, "guarded"),
    "before-a-change": (None, ((1, T0_MS - 100_000), (2, T0_MS + 1_500)), None, "guarded"),
    "before-the-first": (None, ((1, T0_MS + 100_000),), None, "guarded"),
    "guard-ends": (None, ((1, T0_MS - 100_000), (2, T0_MS + 1 - 2000)), 2, None),
}


@pytest.mark.parametrize(
    ("version", "timeline", "counted", "refusal"), VERSION_CASES.values(), ids=VERSION_CASES.keys()
)
def test_the_version_is_the_one_named_else_the_one_in_force_outside_the_guard(
    version: str | None,
    timeline: tuple[tuple[int, int], ...],
    counted: int | None,
    refusal: str | None,
) -> None:
    extra = {"feature_flag.version": version} if version is not None else {}
    out = translate(span(events=(evaluation_event(extra=extra),)), known=rules(timeline=timeline))
    assert {e.flag_version for e in out.events} == ({counted} if counted is not None else set())
    assert out.guarded == (1 if refusal == "guarded" else 0)
    assert [r.reason for r in out.refused] == ([refusal] if refusal == "bad_version" else [])


def test_unknown_variants_are_refused_at_their_spans_index_flags_without_rollout_ignored() -> None:
    batch = [
        span(CHILD, ROOT, kind=1),
        span(
            events=(
                evaluation_event("other"),
                evaluation_event(variant="on"),
                evaluation_event(variant=None),
                evaluation_event(),
            )
        ),
    ]
    out = translate(*batch)
    assert out.refused == [
        Refusal(1, "unknown_variant", "checkout: variant 'on' names no arm"),
        Refusal(1, "unknown_variant", "checkout: variant '' names no arm"),
    ]
    assert out.no_rollout == 1  # "other": an app's ordinary flag, no error
    assert len(exposures(out)) == 1


GO_HOOK_FAILURE = {"feature_flag.result.reason": "error", "error.type": "general"}
FAILED_CASES = {
    # go-sdk-contrib's hook when the OFREP request failed (here: its request was cancelled)
    "go-hook-error": (None, GO_HOOK_FAILURE, "evaluation_error", "checkout: the provider failed"),
    "error-type-alone": (None, {"error.type": "flag_not_found"}, "evaluation_error", "('flag_not"),
    "error-reason-alone": (None, {"feature_flag.result.reason": "ERROR"}, "evaluation_error", ""),
    "no-variant-no-why": (None, {}, "unknown_variant", "checkout: variant '' names no arm"),
    "other-reason": (None, {"feature_flag.result.reason": "default"}, "unknown_variant", ""),
    "variant-wins": ("control", GO_HOOK_FAILURE, None, ""),
}


@pytest.mark.parametrize(
    ("variant", "extra", "reason", "detail"), FAILED_CASES.values(), ids=FAILED_CASES.keys()
)
def test_an_evaluation_the_provider_failed_is_refused_as_such_not_as_a_variant(
    variant: str | None, extra: dict[str, str], reason: str | None, detail: str
) -> None:
    out = translate(span(events=(evaluation_event(variant=variant, extra=extra),)))
    assert [r.reason for r in out.refused] == ([reason] if reason else [])
    assert all(detail in r.detail for r in out.refused)
    assert len(exposures(out)) == (0 if reason else 1)
    assert len(requests(out)) == (0 if reason else 1)


def test_the_plans_variants_name_the_arms() -> None:
    known = rules(arms={"on": "treatment", "off": "control"})
    out = translate(span(events=(evaluation_event(variant="off"),)), known=known)
    assert {e.arm for e in out.events} == {"control"}


ERROR_CASES = {
    "ok": (0, {"http.response.status_code": 200}, 500, False),
    "status-error": (2, {}, 500, True),
    "http-503": (0, {"http.response.status_code": 503}, 500, True),
    "old-http-500": (0, {"http.status_code": 500}, 500, True),
    "http-status-whole-double": (0, {"http.response.status_code": 500.0}, 500, True),
    "http-status-whole-double-ok": (0, {"http.response.status_code": 200.0}, 500, False),
    "old-http-whole-double": (0, {"http.status_code": 503.0}, 500, True),
    "404-by-default": (0, {"http.response.status_code": 404}, 500, False),
    "404-from-400": (0, {"http.response.status_code": 404}, 400, True),
    "new-name-first": (0, {"http.response.status_code": 200, "http.status_code": 500}, 500, False),
}


@pytest.mark.parametrize(
    ("status", "attributes", "minimum", "error"), ERROR_CASES.values(), ids=ERROR_CASES.keys()
)
def test_a_request_errs_on_status_error_or_an_http_status_from_the_minimum(
    status: int, attributes: dict[str, object], minimum: int, error: bool
) -> None:
    server = span(status=status, attributes=attributes, events=(evaluation_event(),))  # type: ignore[arg-type]
    [request] = requests(translate(server, known=rules(error_status_min=minimum)))
    assert request.error is error


UNREADABLE_STATUSES = {
    # name: (the attribute's value, words its refusal says)
    "NaN": (math.nan, "nan is not a whole number"),
    "infinity": (math.inf, "inf is not a whole number"),
    "minus infinity": (-math.inf, "-inf is not a whole number"),
    "fractional": (500.5, "500.5 is not a whole number"),
    "past an int": (1e19, "1e+19 is not a whole number"),
    "digits as a string": ("500", "'500' is a string"),
    "text": ("Internal Server Error", "is a string"),
    "a boolean": (True, "True is a boolean"),
}


@pytest.mark.parametrize(
    ("value", "words"), UNREADABLE_STATUSES.values(), ids=UNREADABLE_STATUSES.keys()
)
@pytest.mark.parametrize("key", ["http.response.status_code", "http.status_code"])
def test_a_request_whose_http_status_is_no_whole_number_is_refused_alone(
    key: str, value: object, words: str
) -> None:
    # Given a request span whose HTTP status is unreadable, beside a good one
    bad = span(CHILD, attributes={key: value}, events=(evaluation_event(unit="u0"),))  # type: ignore[dict-item]
    good = span(trace="b" * 32, attributes={key: 500}, events=(evaluation_event(unit="u1"),))
    # When both are translated
    out = translate(bad, good)
    # Then the bad one is refused at its index, with what it is, and nothing of it counts
    assert [(r.index, r.reason) for r in out.refused] == [(0, "malformed")]
    assert words in out.refused[0].detail
    assert "semantic conventions make it an int" in out.refused[0].detail
    assert [(e.unit, e.error) for e in requests(out)] == [("u1", True)]
    assert [e.unit for e in exposures(out)] == ["u1"]


def test_an_unreadable_http_status_off_a_request_span_is_not_read_so_not_refused() -> None:
    client = span(CHILD, ROOT, kind=3, attributes={"http.response.status_code": math.nan})
    server = span(attributes={"http.response.status_code": 200}, events=(evaluation_event(),))
    out = translate(server, client)
    assert (out.refused, [e.error for e in requests(out)]) == ([], [False])


def test_an_evaluation_below_a_request_refused_for_its_status_is_exposed_never_an_outcome() -> None:
    request = span(attributes={"http.response.status_code": "500"})
    below = span(CHILD, ROOT, kind=1, events=(evaluation_event(),))
    out = translate(below, request)
    assert [r.index for r in out.refused] == [1]
    assert (len(exposures(out)), requests(out)) == (1, [])


@pytest.mark.parametrize(
    ("duration_ms", "latency"),
    [(25.0, 25.0), (0.0125, 0.0125), (0.0, 0.0), (MAX_LATENCY_MS, float(MAX_LATENCY_MS))],
)
def test_latency_is_the_spans_duration(duration_ms: float, latency: float) -> None:
    start = T0 - int(duration_ms * 1_000_000)  # ends at T0, now: the longest is a day
    evaluated = evaluation_event(at=start)
    [request] = requests(translate(span(start=start, duration_ms=duration_ms, events=(evaluated,))))
    assert request.latency_ms == pytest.approx(latency)


MINUTE_NS = 60 * 1_000_000_000
HOUR_NS = 60 * MINUTE_NS
TIME_CASES = {
    # name: (span start, duration in ms, evaluation at, counted or the fault's words)
    "ends before it starts": (T0, -3.0, T0, "ends 3.000 ms before it starts"),
    "ends at 2^63 ns": (T0, (2**63 - 1 - T0) / 1e6, T0, "longer than a day"),
    "starts at 0": (0, T0 / 1e6, T0, "longer than a day"),
    "lasts two days": (T0 - 2 * 24 * HOUR_NS, 2 * 24 * 3_600_000.0, T0, "longer than a day"),
    "ends 11 min after now": (T0 + 11 * MINUTE_NS, 25.0, T0, "ends 660 s after"),
    "ends 25 h before now": (T0 - 25 * HOUR_NS, 25.0, T0 - 25 * HOUR_NS, "ends 89999 s before"),
    "evaluated at 2^63 ns": (T0, 25.0, 2**63 - 1, "evaluated 7423"),
    "ends 9 min after now": (T0 + 9 * MINUTE_NS, 25.0, T0 + 9 * MINUTE_NS, None),
    "ends 23 h before now": (T0 - 23 * HOUR_NS, 25.0, T0 - 23 * HOUR_NS, None),
    "lasts a day": (T0 - 24 * HOUR_NS, 24 * 3_600_000.0, T0, None),
    "zero ms": (T0, 0.0, T0, None),
}


@pytest.mark.parametrize(
    ("start", "duration_ms", "evaluated_at", "fault"), TIME_CASES.values(), ids=TIME_CASES
)
def test_a_span_or_evaluation_at_an_implausible_time_is_refused_alone(
    start: int, duration_ms: float, evaluated_at: int, fault: str | None
) -> None:
    # Given a good request, and beside it one at the time of the case (now is T0)
    good = span(events=(evaluation_event(unit="u0"),))
    case = span(
        CHILD,
        trace="ab" * 16,
        start=start,
        duration_ms=duration_ms,
        events=(evaluation_event(at=evaluated_at),),
    )
    out = translate(good, case)
    units = {e.unit for e in exposures(out)} | {e.unit for e in requests(out)}
    if fault is None:
        assert (out.refused, units) == ([], {"u0", "u1"})
        return
    # Then the case alone is refused, at its index, with its fault; the good one counts
    [refused] = out.refused
    assert (refused.index, refused.reason) == (1, "bad_time")
    assert fault in refused.detail, refused.detail
    assert units == {"u0"}


def test_a_log_records_evaluation_at_an_implausible_time_is_refused() -> None:
    records = [
        record(evaluation_attributes(unit="u1")),
        record(evaluation_attributes(unit="u2"), at=0),
        record(evaluation_attributes(unit="u3"), at=2**63 - 1),
    ]
    out = Translator(lookup(rules())).logs(Logs(records), T0_MS)
    assert [(r.index, r.reason) for r in out.refused] == [(1, "bad_time"), (2, "bad_time")]
    assert [e.unit for e in exposures(out)] == ["u1"]


def test_an_evaluation_deeper_in_the_request_is_counted_on_its_server_span() -> None:
    batch = [
        span(GRANDCHILD, CHILD, kind=1, events=(evaluation_event(),)),
        span(CHILD, ROOT, kind=3),
        span(ROOT, status=2, duration_ms=80),
        span(
            "9999999999999999",
            ROOT,
            name="feature_flag.evaluation",
            kind=1,
            attributes=evaluation_attributes("search", unit="u2"),
        ),
    ]
    out = translate(*batch, known=rules())
    out_search = Translator(lookup(rules(), rules("search"))).spans(Spans(batch), T0_MS)
    [request] = requests(out)
    assert (request.id, request.error, request.latency_ms) == (
        event_id("r", TRACE, ROOT, "checkout"),
        True,
        80.0,
    )
    assert {(r.flag, r.unit) for r in requests(out_search)} == {
        ("checkout", "u1"),
        ("search", "u2"),
    }


def test_one_request_per_flag_however_often_it_was_evaluated() -> None:
    events = (evaluation_event(), evaluation_event(at=T0 + 5), evaluation_event("search"))
    out = Translator(lookup(rules(), rules("search"))).spans(Spans([span(events=events)]), T0_MS)
    assert sorted(r.flag for r in requests(out)) == ["checkout", "search"]
    assert sorted(e.flag for e in exposures(out)) == ["checkout", "search"]


def test_an_ancestor_more_than_eight_spans_up_is_no_outcome() -> None:
    ids = [f"{i + 1:016x}" for i in range(11)]
    chain = [span(ids[0])] + [span(ids[i], ids[i - 1], kind=1) for i in range(1, 11)]
    deep = span(ids[10], ids[9], kind=1, events=(evaluation_event(),))
    out = translate(*chain[:-1], deep)
    assert (len(exposures(out)), requests(out), out.unmatched) == (1, [], 1)
    near = span(ids[8], ids[7], kind=1, events=(evaluation_event(),))
    assert len(requests(translate(*chain[:8], near))) == 1


CONVERTED = frozenset({"checkout_completed"})


def test_a_span_named_as_a_conversion_in_an_evaluated_trace_converts() -> None:
    batch = [
        span(events=(evaluation_event(),)),
        span(CHILD, ROOT, kind=1, name="checkout_completed", attributes={"value": 19.5}),
        span(
            GRANDCHILD,
            CHILD,
            kind=1,
            name="pay",
            events=(
                evaluation_event(
                    name="checkout_completed", at=T0 + 9_000_000, extra={"value": "x"}
                ),
            ),
        ),
    ]
    out = translate(*batch, known=rules(conversions=CONVERTED))
    assert [(c.name, c.value, c.unit, c.arm, c.flag_version, c.ts) for c in conversions(out)] == [
        ("checkout_completed", 19.5, "u1", "treatment", 3, T0_MS + 25),
        ("checkout_completed", None, "u1", "treatment", 3, T0_MS + 9),
    ]
    assert conversions(out)[0].id == event_id("c:checkout_completed", TRACE, CHILD, "checkout")


@pytest.mark.parametrize(
    ("value", "kept"),
    [(7, 7.0), (2.5, 2.5), (True, None), ("3", None), (1e10, None), (float("nan"), None)],
)
def test_a_conversions_value_is_a_bounded_number(value: object, kept: float | None) -> None:
    batch = [
        span(events=(evaluation_event(),)),
        span(CHILD, ROOT, name="checkout_completed", attributes={"value": value}),  # type: ignore[dict-item]
    ]
    [conversion] = conversions(translate(*batch, known=rules(conversions=CONVERTED)))
    assert conversion.value == kept


def test_a_conversion_outside_an_evaluated_trace_or_of_another_flag_is_not_counted() -> None:
    batch = [
        span(events=(evaluation_event("search"),)),
        span(CHILD, ROOT, name="checkout_completed"),
        span(CHILD, ROOT, trace="4bf92f3577b34da6a3ce929d0e0e4736", name="checkout_completed"),
    ]
    known = lookup(rules(conversions=CONVERTED), rules("search"))
    assert conversions(Translator(known).spans(Spans(batch), T0_MS)) == []


def test_rules_of_a_plan_read_its_telemetry_settings() -> None:
    plan = TelemetryPlan(
        variants={"on": "treatment", "off": "control"},
        unit_attribute="enduser.id",
        error_status_min=400,
        conversions=["checkout_completed"],
        conversion_value="amount",
    )
    found = rules_of("checkout", plan, 4, ((4, 20), (3, 10)))
    assert found == FlagRules(
        flag="checkout",
        version=4,
        timeline=((3, 10), (4, 20)),
        arms={"on": "treatment", "off": "control"},
        unit_attribute="enduser.id",
        error_status_min=400,
        conversions=frozenset({"checkout_completed"}),
        conversion_value="amount",
    )
    assert rules_of("checkout", None, 1) == rules("checkout", version=1)
