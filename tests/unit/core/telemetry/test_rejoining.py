"""Joins across a restart: records read again for their joins only, and the rejoin offset.

A record counted before a restart is *replayed*: translated again so that what it leaves
waiting is back in the buffer, emitting nothing of its own. A join between two replayed
halves was counted before (both records were); a join with a half read fresh may not have
been, so it is handed on (``take_ready``) to be folded with the next fresh batch, whose
flush counts it once by id.
"""

from __future__ import annotations

from typing import Literal

import pytest

from controller.core.telemetry import Logs, RejoinMarks, Spans, Translator
from controller.core.wire import ExposureIn, InEvent, RequestIn
from tests.unit.core.telemetry.builders import (
    CHILD,
    ROOT,
    T0_MS,
    evaluation_attributes,
    evaluation_event,
    lookup,
    record,
    rules,
    span,
)

WINDOW = 30_000
Half = Literal["log", "span", "child", "parent"]
"""A log record's evaluation (in span ROOT), ROOT's server span; a child span carrying its
evaluation as an event (under ROOT), and ROOT as that child's parent."""


def _kinds(events: list[InEvent]) -> list[str]:
    return [
        "x" if isinstance(e, ExposureIn) else "r" if isinstance(e, RequestIn) else "c"
        for e in events
    ]


def _translate(translator: Translator, half: Half, replaying: bool, at: int) -> list[InEvent]:
    if half == "log":
        batch = Logs([record(evaluation_attributes(), span_id=ROOT)])
        return translator.logs(batch, at, replaying=replaying).events
    if half == "child":
        child = span(CHILD, ROOT, kind=1, events=(evaluation_event(),))
        return translator.spans(Spans([child]), at, replaying=replaying).events
    return translator.spans(Spans([span(ROOT, status=2)]), at, replaying=replaying).events


@pytest.mark.parametrize(
    ("steps", "emitted", "ready"),
    [
        # no restart: the second half emits the outcome
        ([("log", False), ("span", False)], [["x"], ["r"]], []),
        ([("span", False), ("log", False)], [[], ["x", "r"]], []),
        # both halves counted before the restart: read again, nothing counts again
        ([("log", True), ("span", True)], [[], []], []),
        ([("span", True), ("log", True)], [[], []], []),
        ([("child", True), ("parent", True)], [[], []], []),
        # the waiting half read again, the other half fresh: the fresh batch emits it
        ([("log", True), ("span", False)], [[], ["r"]], []),
        ([("span", True), ("log", False)], [[], ["x", "r"]], []),
        ([("child", True), ("parent", False)], [[], ["r"]], []),
        # a fresh half first, its replayed twin after: maybe not counted, handed on
        ([("span", False), ("log", True)], [[], []], ["r"]),
        ([("log", False), ("span", True)], [["x"], []], ["r"]),
        ([("parent", False), ("child", True)], [[], []], ["r"]),
        # a span replayed, then delivered again fresh (a relay's copy): fresh wins
        ([("span", True), ("span", False), ("log", True)], [[], [], []], ["r"]),
    ],
)
def test_a_replayed_record_restores_its_joins_and_counts_only_what_a_fresh_half_completes(
    steps: list[tuple[Half, bool]], emitted: list[list[str]], ready: list[str]
) -> None:
    translator = Translator(lookup(rules()), join_window_ms=WINDOW)
    seen = [
        _kinds(_translate(translator, half, replaying, T0_MS + i))
        for i, (half, replaying) in enumerate(steps)
    ]
    assert seen == emitted
    assert _kinds(translator.take_ready()) == ready
    assert translator.take_ready() == []


def test_a_replayed_evaluation_left_waiting_expires_after_the_window_uncounted() -> None:
    translator = Translator(lookup(rules()), join_window_ms=WINDOW)
    _translate(translator, "log", True, T0_MS)
    assert translator.expire(T0_MS + WINDOW) == 1
    assert _translate(translator, "span", False, T0_MS + WINDOW) == []


@pytest.mark.parametrize(
    ("folds", "now_offset", "want"),
    [
        ([], 10, 10),  # nothing folded: the next offset
        ([(5, 0), (6, 10)], 7, 5),  # both within the window: the first
        ([(5, 0), (6, WINDOW + 1)], 7, 6),  # the first is a window older than the last
        ([(5, 0), (6, 2 * WINDOW)], 7, 6),
        ([(5, 0), (6, 0), (7, 0)], 8, 5),  # records of one time: one mark
        ([(5, 10), (6, 5), (7, WINDOW + 10)], 8, 7),  # an older time is covered by the mark before
        ([(5, 0), (4, 0)], 6, 5),  # folded again (a refused flush): no mark moves
    ],
)
def test_the_rejoin_offset_is_the_first_record_folded_within_the_window(
    folds: list[tuple[int, int]], now_offset: int, want: int
) -> None:
    marks = RejoinMarks(window_ms=WINDOW)
    for offset, at in folds:
        marks.folded(0, offset, T0_MS + at)
    assert marks.position(0, now_offset) == want
    assert marks.position(1, 3) == 3  # another partition keeps its own


def test_a_new_claim_starts_the_marks_again() -> None:
    marks = RejoinMarks(window_ms=WINDOW)
    marks.folded(0, 50, T0_MS)
    marks.forget(0)
    marks.folded(0, 40, T0_MS)
    assert marks.position(0, 41) == 40
