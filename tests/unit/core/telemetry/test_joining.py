"""The join buffer: what arrives apart is joined within the window, and the buffer stays bounded."""

from __future__ import annotations

from collections import OrderedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.telemetry import Logs, Spans, Translated, Translator, event_id
from controller.core.telemetry.joining import MAX_PER_KEY, JoinBuffer, Node, Waiting, Window
from controller.core.wire import ConversionIn, ExposureIn, RequestIn
from tests.unit.core.telemetry.builders import (
    CHILD,
    GRANDCHILD,
    OTHER_TRACE,
    ROOT,
    T0_MS,
    TRACE,
    evaluation_attributes,
    evaluation_event,
    lookup,
    record,
    rules,
    span,
)

WINDOW = 30_000


def kinds(out: Translated) -> list[str]:
    return [type(e).__name__ for e in out.events]


def translator(max_pending: int = 100, **known: frozenset[str]) -> Translator:
    return Translator(
        lookup(rules(conversions=known.get("conversions", frozenset()))),
        join_window_ms=WINDOW,
        max_pending=max_pending,
    )


def test_a_log_before_its_span_waits_for_it() -> None:
    joined = translator()
    first = joined.logs(Logs([record(evaluation_attributes(), span_id=CHILD)]), T0_MS)
    assert kinds(first) == ["ExposureIn"]
    second = joined.spans(Spans([span(CHILD, ROOT, kind=1), span(ROOT, status=2)]), T0_MS + 5)
    [request] = second.events
    assert isinstance(request, RequestIn)
    assert (request.id, request.unit, request.error) == (
        event_id("r", TRACE, ROOT, "checkout"),
        "u1",
        True,
    )
    assert (first.unmatched, second.unmatched) == (0, 0)


def test_a_span_before_its_log_is_remembered_for_it() -> None:
    joined = translator()
    assert joined.spans(Spans([span(ROOT)]), T0_MS).events == []
    later = joined.logs(Logs([record(evaluation_attributes())]), T0_MS + WINDOW - 1)
    assert kinds(later) == ["ExposureIn", "RequestIn"]


def test_the_server_span_may_come_one_batch_after_its_child() -> None:
    joined = translator()
    child = span(CHILD, ROOT, kind=1, events=(evaluation_event(),))
    assert kinds(joined.spans(Spans([child]), T0_MS)) == ["ExposureIn"]
    assert kinds(joined.spans(Spans([span(GRANDCHILD, CHILD, kind=1)]), T0_MS + 1)) == []
    assert kinds(joined.spans(Spans([span(ROOT)]), T0_MS + 2)) == ["RequestIn"]


def test_an_evaluation_whose_span_never_comes_expires_unmatched() -> None:
    joined = translator()
    joined.logs(Logs([record(evaluation_attributes(), span_id=CHILD)]), T0_MS)
    assert joined.expire(T0_MS + WINDOW - 1) == 0
    assert joined.expire(T0_MS + WINDOW) == 1
    late = joined.spans(Spans([span(CHILD)]), T0_MS + WINDOW + 1)
    assert late.events == []


def test_a_translation_expires_what_is_past_the_window_first() -> None:
    joined = translator()
    joined.logs(Logs([record(evaluation_attributes(), span_id=CHILD)]), T0_MS)
    out = joined.spans(Spans([span(CHILD)]), T0_MS + WINDOW)
    assert (out.events, out.unmatched) == ([], 1)


def test_past_max_pending_the_oldest_waiting_evaluation_is_dropped_unmatched() -> None:
    joined = translator(max_pending=2)
    waits = ["1111111111111111", "2222222222222222", "3333333333333333"]
    outs = [
        joined.logs(Logs([record(evaluation_attributes(unit=f"u{i}"), span_id=s)]), T0_MS + i)
        for i, s in enumerate(waits)
    ]
    assert [o.unmatched for o in outs] == [0, 0, 1]
    arrived = joined.spans(Spans([span(s) for s in waits]), T0_MS + 10)
    assert sorted(e.unit for e in arrived.events if isinstance(e, RequestIn)) == ["u1", "u2"]


def test_a_conversion_exported_before_the_evaluation_in_its_trace_is_counted_later() -> None:
    joined = translator(conversions=frozenset({"checkout_completed"}))
    joined.spans(Spans([span(events=(evaluation_event(),))]), T0_MS)  # learns the names
    other = "4bf92f3577b34da6a3ce929d0e0e4736"
    conversion = span(CHILD, ROOT, trace=other, name="checkout_completed", attributes={"value": 5})
    assert joined.spans(Spans([conversion]), T0_MS + 1).events == []
    later = joined.spans(
        Spans([span(trace=other, events=(evaluation_event(unit="u9"),))]), T0_MS + 2
    )
    [converted] = [e for e in later.events if isinstance(e, ConversionIn)]
    assert (converted.unit, converted.value) == ("u9", 5.0)


def test_a_conversion_after_the_evaluation_is_joined_by_trace_within_the_window() -> None:
    joined = translator(conversions=frozenset({"checkout_completed"}))
    joined.spans(Spans([span(events=(evaluation_event(),))]), T0_MS)
    click = record({"value": 2}, span_id="", event_name="checkout_completed")
    [converted] = joined.logs(Logs([click]), T0_MS + WINDOW - 1).events
    assert isinstance(converted, ConversionIn)
    assert (converted.unit, converted.value, converted.name) == ("u1", 2.0, "checkout_completed")
    assert joined.logs(Logs([click]), T0_MS + 2 * WINDOW).events == []


@pytest.mark.parametrize(
    ("conversions", "traces"),
    [(frozenset(), 0), (frozenset({"checkout_completed"}), 2)],
)
def test_only_evaluations_of_flags_that_count_conversions_are_kept_by_trace(
    conversions: frozenset[str], traces: int
) -> None:
    joined = translator(conversions=conversions)
    in_span = joined.spans(Spans([span(events=(evaluation_event(),))]), T0_MS)
    in_log = joined.logs(
        Logs([record(evaluation_attributes(), trace=OTHER_TRACE, span_id="")]), T0_MS
    )
    assert (kinds(in_span), kinds(in_log)) == (["ExposureIn", "RequestIn"], ["ExposureIn"])
    assert joined.buffer.sizes()["traces"] == traces


def test_an_evaluation_outside_any_span_has_an_exposure_and_no_outcome() -> None:
    joined = translator()
    outside = record(evaluation_attributes(), trace="", span_id="")
    out = joined.logs(Logs([outside]), T0_MS)
    [exposure] = out.events
    assert isinstance(exposure, ExposureIn)
    assert exposure.unit == "u1"
    assert out.unmatched == 1
    no_unit = joined.logs(
        Logs([record(evaluation_attributes(unit=None), trace="", span_id="")]), T0_MS
    )
    assert [(r.index, r.reason) for r in no_unit.refused] == [(0, "no_unit")]


def test_a_window_keeps_its_newest_entries_in_order_of_deadline() -> None:
    window: Window[int] = Window(window_ms=10, cap=3)
    assert [window.put(k, v, now) for k, v, now in [("a", 1, 0), ("b", 2, 1), ("c", 3, 2)]] == [
        [],
        [],
        [],
    ]
    assert window.put("a", 4, 3) == []  # refreshed: now the newest
    assert window.put("d", 5, 4) == [2]  # b is the oldest now
    assert (window.get("a"), window.get("b"), len(window)) == (4, None, 3)
    assert window.expire(12) == [3]
    assert sorted(window.values()) == [4, 5]
    assert window.pop("a") == 4
    assert window.pop("a") is None


def test_a_window_takes_a_batch_as_it_takes_each_entry() -> None:
    window: Window[int] = Window(window_ms=10, cap=3)
    window.put("a", 1, 0)
    window.put("b", 2, 0)
    assert window.put_all({"a": 3, "c": 4, "d": 5}, 5) == 1  # b, the oldest, is evicted
    assert list(window.keys()) == ["a", "c", "d"]
    assert (window.get("a"), window.get("b")) == (3, None)
    assert window.expire(14) == []
    assert window.expire(15) == [3, 4, 5]
    assert window.put_all({}, 20) == 0


@pytest.mark.parametrize(
    ("puts", "evicted", "kept"),
    [
        # (key, value, now) in turn (value None: pop), cap 3: a put at the cap evicts the oldest
        ([("a", 1, 0), ("b", 2, 0), ("c", 3, 1), ("d", 4, 2)], [[], [], [], [1]], "bcd"),
        # put again at a later time: the key moves to that time's run, its old place is skipped
        (
            [("a", 1, 0), ("b", 2, 0), ("a", 5, 1), ("c", 3, 1), ("d", 4, 2)],
            [[], [], [], [], [2]],
            "acd",
        ),
        # put again at the same time: it moves to the end all the same
        (
            [("a", 1, 0), ("b", 2, 0), ("a", 5, 0), ("c", 3, 1), ("d", 4, 2)],
            [[], [], [], [], [2]],
            "acd",
        ),
        # popped, then put again at the same time: it is the newest
        (
            [("a", 1, 0), ("b", 2, 0), ("a", None, 0), ("a", 5, 0), ("c", 3, 1), ("d", 4, 2)],
            [[], [], [1], [], [], [2]],
            "acd",
        ),
        # a time earlier than the last: its own run, after the others (as put)
        ([("a", 1, 5), ("b", 2, 0), ("c", 3, 5), ("d", 4, 6)], [[], [], [], [1]], "bcd"),
    ],
)
def test_a_window_evicts_in_the_order_put(
    puts: list[tuple[str, int | None, int]], evicted: list[list[int | None]], kept: str
) -> None:
    window: Window[int] = Window(window_ms=10, cap=3)
    done = [
        window.put(key, value, now) if value is not None else [window.pop(key)]
        for key, value, now in puts
    ]
    assert done == evicted
    assert "".join(sorted(window.keys())) == kept


def test_a_window_evicts_a_batch_past_the_cap_oldest_first_and_skips_what_was_popped() -> None:
    window: Window[int] = Window(window_ms=100, cap=4)
    assert window.put_all({"a": 1, "b": 2, "c": 3}, 0) == 0
    assert window.pop("a") == 1
    assert window.put_all({"d": 4, "e": 5, "f": 6}, 1) == 1  # b: a was popped already
    assert list(window.keys()) == ["c", "d", "e", "f"]
    assert window.put_all({"g": 7, "c": 8}, 2) == 1  # d: c was put again, it moves on
    assert list(window.keys()) == ["e", "f", "g", "c"]
    assert window.get("c") == 8
    assert window.expire(100) == []
    assert window.expire(101) == [5, 6]  # e and f's time is up; g and c live until 102
    assert window.expire(102) == [7, 8]
    assert len(window) == 0


def test_a_window_expires_past_entries_that_left_even_when_the_clock_went_back() -> None:
    window: Window[int] = Window(window_ms=10, cap=5)
    window.put("a", 1, 5)
    window.put("b", 2, 0)  # a record stamped earlier than the one before
    assert window.expire(10) == []  # a, put first, is not yet due: b waits behind it
    assert window.pop("a") == 1
    assert window.expire(10) == [2]


def test_a_window_whose_keys_are_put_and_popped_forever_stays_bounded() -> None:
    window: Window[int] = Window(window_ms=10**9, cap=10)
    for now in range(1000):
        window.put("k", now, now)
        window.put_all({"k": now, f"x{now % 3}": now}, now)
        assert window.pop("k") == now
    assert sorted(window.keys()) == ["x0", "x1", "x2"]
    held = sum(len(run.keys) - run.start for run in window._runs)
    assert held <= 3 + 2 * 10 + 2  # the keys in the map, and fewer than twice the cap left behind


class _Model:
    """What a window means, plainly: entries in the order put, each with its deadline."""

    def __init__(self, window_ms: int, cap: int) -> None:
        self.window_ms, self.cap = window_ms, cap
        self.items: OrderedDict[str, tuple[int, int]] = OrderedDict()

    def put_all(self, entries: dict[str, int], now: int) -> list[int]:
        for key, value in entries.items():
            self.items.pop(key, None)
            self.items[key] = (now + self.window_ms, value)
        evicted = []
        while len(self.items) > self.cap:
            evicted.append(self.items.popitem(last=False)[1][1])
        return evicted

    def expire(self, now: int) -> list[int]:
        gone = []
        while self.items and next(iter(self.items.values()))[0] <= now:
            gone.append(self.items.popitem(last=False)[1][1])
        return gone


_KEYS = st.sampled_from("abcdefgh")
_OPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "put_all", "pop", "expire"]),
        st.lists(_KEYS, max_size=5),
        st.integers(-2, 3),  # the clock moves on, stays, or goes back
    ),
    max_size=60,
)


@given(cap=st.integers(1, 6), window_ms=st.integers(1, 8), ops=_OPS)
def test_a_window_holds_evicts_and_expires_as_the_plain_model(
    cap: int, window_ms: int, ops: list[tuple[str, list[str], int]]
) -> None:
    window: Window[int] = Window(window_ms=window_ms, cap=cap)
    model, now = _Model(window_ms, cap), 0
    for step, (op, keys, tick) in enumerate(ops):
        now += tick
        if op == "put" and keys:
            assert window.put(keys[0], step, now) == model.put_all({keys[0]: step}, now)
        elif op == "put_all":
            entries = {key: step * 10 + i for i, key in enumerate(keys)}
            assert window.put_all(entries, now) == len(model.put_all(entries, now))
        elif op == "pop" and keys:
            found = model.items.pop(keys[0], None)
            assert window.pop(keys[0]) == (None if found is None else found[1])
        elif op == "expire":
            assert window.expire(now) == model.expire(now)
        assert list(window.keys()) == list(model.items)
        assert list(window.values()) == [value for _, value in model.items.values()]


def test_evaluations_waiting_for_one_span_are_bounded_too() -> None:
    buffer: JoinBuffer[str, str] = JoinBuffer(window_ms=WINDOW, max_pending=10)
    dropped = [buffer.wait(ROOT, Waiting(f"e{i}", 0), T0_MS) for i in range(MAX_PER_KEY + 2)]
    assert sum(dropped) == 2
    assert len(buffer.arrived(ROOT)) == MAX_PER_KEY
    assert buffer.arrived(ROOT) == []


@pytest.mark.parametrize("parts", [100, 1000])
def test_every_part_of_the_buffer_holds_at_most_max_pending_keys(parts: int) -> None:
    buffer: JoinBuffer[str, str] = JoinBuffer(window_ms=WINDOW, max_pending=parts // 10)
    for i in range(parts):
        key = f"{i:016x}"
        buffer.remember(Node(key, "", True, 0, 1, False, None), T0_MS)
        buffer.wait(key, Waiting("e", 0), T0_MS)
        buffer.note(key * 2, "f", "e", T0_MS)
        buffer.park(key * 2, "c", T0_MS)
    assert buffer.sizes() == dict.fromkeys(("spans", "waiting", "traces", "parked"), parts // 10)
