"""Whether a source still sees an arm: the selectors its newest sample is asked of, and
answers that are frozen, dark or dated far from when they were asked."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.core.metrics_source import (
    Answer,
    Series,
    newest_sample_query,
    selectors,
    sight_problem,
)

AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
T = AT.timestamp()


@pytest.mark.parametrize(
    ("promql", "found"),
    [
        (
            'sum(increase(req_total{f="a",v="on"}[60s]))',
            ('req_total{f="a",v="on"}',),
        ),
        (  # a ratio: both selectors, once each
            'sum(increase(e{f="a"}[60s])) / sum(increase(r {f="a"}[60s])) + sum(e{f="a"})',
            ('e{f="a"}', 'r{f="a"}'),
        ),
        (
            'sum by (le) (rate({__name__="lat_bucket", f="a"}[1m]))',
            ('{__name__="lat_bucket", f="a"}',),
        ),
        ('x{f="}{"} # y{f="b"}\n', ('x{f="}{"}',)),  # a brace in a string, a comment
        ("sum(up)", ()),  # no matchers: nothing to ask
        ('s{a="\\"}"}', ('s{a="\\"}"}',)),  # an escaped quote stays in its string
    ],
)
def test_the_selectors_with_matchers_are_found_outside_strings_and_comments(
    promql: str, found: tuple[str, ...]
) -> None:
    assert selectors(promql) == found


def test_the_newest_sample_is_asked_of_every_selector_of_an_arm_apart() -> None:
    asked = newest_sample_query(
        ['sum(increase(r{f="a",code="500"}[9s]))', 'sum(increase(r{f="a"}[9s]))']
    )
    assert asked == (
        'max(label_replace(timestamp(r{f="a",code="500"}), "rc_selector", "0", "", "")'
        ' or label_replace(timestamp(r{f="a"}), "rc_selector", "1", "", ""))'
    )
    assert newest_sample_query(["vector(1)"]) is None


def answer(value: float = 5.0, at: float | None = T) -> Answer:
    return Answer((Series((), value, at),))


@pytest.mark.parametrize(
    ("answers", "newest", "why"),
    [
        ([answer()], answer(T - 3), None),  # scraped 3 s ago
        ([answer()], None, None),  # nothing to ask it of
        ([answer(at=None)], answer(T - 59), None),  # a source that dates nothing; in bound
        ([answer()], Answer(()), "no current sample of its series: not scraped now"),
        ([answer()], answer(T - 61), "its newest sample is 61 s old"),
        ([answer()], answer(0.0), "dated 1970-01-01T00:00:00+00:00"),
        ([answer()], answer(T + 3600), "after it was asked: implausible"),
        ([answer()], answer(float("nan")), "dated nan, after it was asked: implausible"),
        ([answer(at=1.0)], answer(T), "an answer dated 1970-01-01T00:00:01+00:00"),
        ([answer(at=T + 86400)], answer(T), "an answer dated 2026-11-23T12:00:00+00:00"),
        ([], answer(T, at=T - 600), "an answer dated 2026-11-22T11:50:00+00:00"),
    ],
)
def test_an_arm_is_missing_when_its_series_are_dark_or_its_answers_misdated(
    answers: list[Answer], newest: Answer | None, why: str | None
) -> None:
    found = sight_problem(answers, newest, asked_at=AT, bound_s=60)
    if why is None:
        assert found is None
    else:
        assert found is not None
        assert why in found
