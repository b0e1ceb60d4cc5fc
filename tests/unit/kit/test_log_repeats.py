"""Repeated log lines: one shown per cause per interval, the others counted, on a turned clock."""

from __future__ import annotations

import pytest

from controller.kit.log_repeats import RepeatLimiter, Repeats, Verdict

INTERVAL = 10.0
HELD = Verdict(show=False)
SHOWN = Verdict(show=True)


def shown_with(cause: str, count: int, seconds: float) -> Verdict:
    return Verdict(show=True, repeats=Repeats(cause=cause, count=count, seconds=seconds))


@pytest.mark.parametrize(
    ("lines", "verdicts"),
    [
        pytest.param([("refused", 0.0)], [SHOWN], id="a first line is shown"),
        pytest.param(
            [("refused", 0.0), ("refused", 0.1), ("refused", 9.9)],
            [SHOWN, HELD, HELD],
            id="lines within the interval are held back",
        ),
        pytest.param(
            [("refused", 0.0), ("refused", 1.0), ("refused", 4.0), ("refused", 10.0)],
            [SHOWN, HELD, HELD, shown_with("refused", 2, 4.0)],
            id="the first line after it is shown with the count held back",
        ),
        pytest.param(
            [("refused", 0.0), ("refused", 10.0), ("refused", 12.0), ("refused", 20.0)],
            [SHOWN, SHOWN, HELD, shown_with("refused", 1, 2.0)],
            id="each shown line opens the next interval",
        ),
        pytest.param(
            [("refused", 0.0), ("timeout", 0.5), ("refused", 1.0), ("timeout", 2.0)],
            [SHOWN, SHOWN, HELD, HELD],
            id="each cause has its own interval",
        ),
        pytest.param(
            [("refused", 0.0), ("refused", 30.0)],
            [SHOWN, SHOWN],
            id="a line long after a quiet one is shown without a count",
        ),
    ],
)
def test_one_line_per_cause_per_interval(
    lines: list[tuple[str, float]], verdicts: list[Verdict]
) -> None:
    limiter = RepeatLimiter(INTERVAL)
    assert [limiter.see(cause, now) for cause, now in lines] == verdicts


def test_an_outage_of_157_lines_a_second_is_two_lines_per_ten_seconds() -> None:
    limiter = RepeatLimiter(INTERVAL)
    seen = [limiter.see("refused", n / 157) for n in range(17 * 157)]  # 17 s of them
    shown = [v for v in seen if v.show]
    assert len(shown) == 2, shown
    assert shown[1].repeats is not None
    assert shown[1].repeats.count == 1569
    # and the last 7 s are told once their interval ends
    (last,) = limiter.due(27.0)
    assert last.count == 17 * 157 - 1571
    assert sum(1 for v in seen if not v.show) == shown[1].repeats.count + last.count


@pytest.mark.parametrize(
    ("now", "due", "next_due"),
    [
        pytest.param(9.9, [], 10.0, id="nothing before the interval ends"),
        pytest.param(10.0, [Repeats("refused", 2, 3.0)], None, id="told when it ends"),
        pytest.param(25.0, [Repeats("refused", 2, 3.0)], None, id="however late it is asked"),
    ],
)
def test_held_lines_are_told_when_their_interval_ends_without_another_line(
    now: float, due: list[Repeats], next_due: float | None
) -> None:
    limiter = RepeatLimiter(INTERVAL)
    for at in (0.0, 1.0, 3.0):
        limiter.see("refused", at)
    limiter.see("quiet", 0.5)  # nothing held: nothing to tell
    assert limiter.due(now) == due
    assert limiter.next_due() == next_due


def test_the_line_that_tells_held_lines_opens_the_next_interval() -> None:
    limiter = RepeatLimiter(INTERVAL)
    limiter.see("refused", 0.0)
    limiter.see("refused", 1.0)
    assert limiter.due(10.5) == [Repeats("refused", 1, 1.0)]
    assert limiter.due(11.0) == []  # told once
    assert limiter.see("refused", 12.0) == HELD  # within 10 s of the line that told
    assert limiter.due(20.5) == [Repeats("refused", 1, 1.5)]
    assert limiter.due(31.0) == []  # a quiet interval closes the window
    assert limiter.tracked() == set()
    assert limiter.see("refused", 32.0) == SHOWN


def test_pending_tells_every_window_with_held_lines_and_forgets_them() -> None:
    limiter = RepeatLimiter(INTERVAL)
    for cause, at in [("a", 0.0), ("a", 1.0), ("b", 2.0), ("c", 3.0), ("c", 5.0), ("c", 6.0)]:
        limiter.see(cause, at)
    assert limiter.pending() == [Repeats("a", 1, 1.0), Repeats("c", 2, 3.0)]
    assert limiter.tracked() == set()


def test_past_its_bound_a_new_cause_is_shown_untracked_and_ended_quiet_ones_make_room() -> None:
    limiter = RepeatLimiter(INTERVAL, max_causes=2)
    limiter.see("a", 0.0)
    limiter.see("b", 0.0)
    limiter.see("b", 1.0)  # b has lines held back: kept until told
    assert [limiter.see("c", 1.0), limiter.see("c", 2.0)] == [SHOWN, SHOWN]
    assert limiter.tracked() == {"a", "b"}
    assert limiter.see("c", 11.0) == SHOWN  # a's interval ended with nothing held
    assert limiter.tracked() == {"b", "c"}
    assert limiter.see("c", 12.0) == HELD


@pytest.mark.parametrize("interval", [0.0, -1.0])
def test_an_interval_must_be_positive(interval: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        RepeatLimiter(interval)
