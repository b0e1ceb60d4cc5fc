"""What a metric source answers, and the numbers a guardrail takes from it.

A source answers a query with series: label sets and one value each (a
scalar is one series without labels). :func:`one_number` and
:func:`cumulative_buckets` take what a guardrail needs from an answer and
refuse anything else with a reason, never a guess: no series, several where
one number was meant, a value that is not a finite count, buckets that are
not a histogram. A refusal makes the gate hold (it never advances on data it
could not read) and is shown with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from controller.core.common import ControllerError

MAX_SERIES = 1000
"""The most series an answer may hold (a histogram has a few dozen buckets)."""
MAX_BUCKETS = 200
"""The most ``le`` buckets a histogram answer may hold."""
MAX_COUNT = 1e15
"""A count beyond this is not a count of requests over a stage."""


class ReadingProblem(ControllerError, ValueError):
    """An answer a guardrail cannot use; the message is the reason shown."""


@dataclass(frozen=True, slots=True)
class Series:
    """One series of an answer: its labels (sorted), its value, and when the source dated
    it (Unix seconds; None where no source said)."""

    labels: tuple[tuple[str, str], ...]
    value: float
    at: float | None = None

    def label(self, name: str) -> str | None:
        return next((v for k, v in self.labels if k == name), None)


@dataclass(frozen=True, slots=True)
class Answer:
    """A source's answer to one query at one instant."""

    series: tuple[Series, ...]


def _count(value: float, what: str) -> float:
    if math.isnan(value):
        raise ReadingProblem(f"{what} is NaN (no samples in the window, or 0/0)")
    if math.isinf(value):
        raise ReadingProblem(f"{what} is infinite")
    if value < 0 or value > MAX_COUNT:
        raise ReadingProblem(f"{what} {value:g} is not a count")
    return value


def one_number(answer: Answer) -> float:
    """The answer's one value, a count: refused when there is none, several, or no count."""
    if not answer.series:
        raise ReadingProblem(
            "no series: nothing matched (is the app scraped? are the labels right?)"
        )
    if len(answer.series) > 1:
        raise ReadingProblem(
            f"{len(answer.series)} series where one number was meant: aggregate with sum(…)"
        )
    return _count(answer.series[0].value, "the value")


def scalar(answer: Answer) -> float:
    """The answer's one finite value (a limit's query: any sign)."""
    if len(answer.series) != 1:
        raise ReadingProblem(f"{len(answer.series)} series where one number was meant")
    value = answer.series[0].value
    if not math.isfinite(value):
        raise ReadingProblem(f"the value is {value}")
    return value


def cumulative_buckets(answer: Answer, *, le_unit: str) -> tuple[tuple[float, float], ...]:
    """(upper edge in ms, cumulative count) per bucket, ascending, ending at +Inf.

    Refused: no series, a series without a numeric ``le``, an ``le`` seen twice,
    no ``+Inf`` bucket, more than :data:`MAX_BUCKETS`, a count not a count.
    Counts that dip as ``le`` rises (``increase`` extrapolates each series on its
    own) are lifted to the running maximum, as ``histogram_quantile`` does.
    """
    if not answer.series:
        raise ReadingProblem("no series: no histogram buckets matched")
    if len(answer.series) > MAX_BUCKETS:
        raise ReadingProblem(f"{len(answer.series)} buckets, more than {MAX_BUCKETS}")
    scale = 1000.0 if le_unit == "seconds" else 1.0
    edges: dict[float, float] = {}
    for series in answer.series:
        edge = _le(series.label("le")) * scale
        if edge in edges:
            raise ReadingProblem(f"le={series.label('le')} twice: aggregate with sum by (le)")
        edges[edge] = _count(series.value, f"the bucket le={series.label('le')}")
    if math.inf not in edges:
        raise ReadingProblem("no le=+Inf bucket: not a whole histogram")
    out, running = [], 0.0
    for edge in sorted(edges):
        running = max(running, edges[edge])
        out.append((edge, running))
    return tuple(out)


def _le(text: str | None) -> float:
    if text is None:
        raise ReadingProblem("a series without an le label: not histogram buckets")
    try:
        edge = float(text)
    except ValueError:
        raise ReadingProblem(f"le={text[:32]!r} is not a number") from None
    if math.isnan(edge) or edge < 0:
        raise ReadingProblem(f"le={text[:32]!r} is not a bucket edge")
    return edge


Stage = tuple[str, int, datetime]
"""The stage a reading was taken for: rollout id, stage index, when the stage started."""
Ask = tuple[str, str]
"""One query of a guardrail: (arm, role), role one of count, total, buckets, value."""


@dataclass(frozen=True, slots=True)
class Taken:
    """One guardrail's (or limit's) answers, all asked at one instant for one stage.

    Its queries are asked together so its numbers agree (a count and a total
    over the same window); an answer the source gave but the guardrail cannot
    use is kept as its reason, and holds that guardrail.
    """

    stage: Stage
    at: datetime
    answers: Mapping[Ask, Answer | str]
    queries: Mapping[Ask, str]


@dataclass(frozen=True, slots=True)
class Failing:
    """Why a guardrail's last try gave no answers (the source down, slow, hostile), since when."""

    reason: str
    since: datetime


@dataclass(frozen=True, slots=True)
class FlagReadings:
    """What a flag's sourced guardrails last read: by guardrail, the last answers taken and
    the failure since (a failed try keeps the answers taken before: stale, they hold)."""

    source: str
    """The source as the operator finds it: ``prometheus at http://… (setting prometheus.url)``."""
    taken: Mapping[str, Taken] = field(default_factory=dict)
    failing: Mapping[str, Failing] = field(default_factory=dict)
