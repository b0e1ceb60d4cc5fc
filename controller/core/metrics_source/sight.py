"""Whether a source still sees an arm: its newest sample, and when its answers are dated.

``increase(…[{{window}}])`` keeps answering after an arm's target stops being
scraped (a crash-looping canary, broken relabelling, the whole app unscraped):
its samples stay inside the window, frozen, while the other arm's grow. So the
answer alone cannot say that the arm is still seen. Each arm is therefore also
asked for the newest sample of the series its queries select
(:func:`newest_sample_query`: ``timestamp()`` of each vector selector, the
newest of them), and :func:`sight_problem` calls the arm *missing* when

* none of its series has a current sample (Prometheus marks a series stale
  once a scrape of its target fails or no longer returns it, so
  ``timestamp()`` of it answers nothing),
* its newest sample is older than the bound (``prometheus.max_sample_age_seconds``),
* or an answer, or that newest sample, is dated further than the bound from
  the instant asked (a sample dated 1970, or in the future): implausible.

The newest sample is per arm over all the series its queries select, so a
rolling restart (old pods' series going stale, the new pods' fresh) does not
hold, and an arm with no errors yet (an error count matching nothing) is seen
through its total's series. Pure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime

from controller.core.metrics_source.readings import Answer

SELECTOR_LABEL = "rc_selector"
"""Keeps apart the newest samples of different selectors of one arm's query."""
MAX_SELECTORS = 32
"""The most vector selectors one arm's newest sample is asked of."""
_NAME_BEFORE = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*\s*$")


def selectors(promql: str) -> tuple[str, ...]:
    """Each vector selector with label matchers in ``promql`` (``name{…}`` or ``{…}``),
    once, in order; strings and ``#`` comments are skipped as PromQL reads them."""
    found: dict[str, None] = {}
    i = 0
    while i < len(promql):
        char = promql[i]
        if char in "\"'`":
            i = _string_end(promql, i)
        elif char == "#":
            end = promql.find("\n", i)
            i = len(promql) if end < 0 else end
        elif char == "{":
            end = _block_end(promql, i)
            name = _NAME_BEFORE.search(promql, 0, i)
            start = i if name is None else name.start()
            found[promql[start:i].strip() + promql[i:end]] = None
            i = end
        else:
            i += 1
    return tuple(found)


def _string_end(text: str, start: int) -> int:
    """The offset just past the string opening at ``start`` (or the text's end)."""
    quote, i = text[start], start + 1
    while i < len(text):
        if text[i] == "\\" and quote != "`":
            i += 2
        elif text[i] == quote:
            return i + 1
        else:
            i += 1
    return len(text)


def _block_end(text: str, start: int) -> int:
    """The offset just past the ``}`` closing the matchers opened at ``start``."""
    i = start + 1
    while i < len(text):
        if text[i] in "\"'`":
            i = _string_end(text, i)
        elif text[i] == "}":
            return i + 1
        else:
            i += 1
    return len(text)


def newest_sample_query(promqls: Iterable[str]) -> str | None:
    """One query answering the newest sample time (Unix seconds) among the series the
    selectors of ``promqls`` select now; None when they have no selector with matchers."""
    found = dict.fromkeys(s for q in promqls for s in selectors(q))
    chosen = list(found)[:MAX_SELECTORS]
    if not chosen:
        return None
    parts = [
        f'label_replace(timestamp({selector}), "{SELECTOR_LABEL}", "{i}", "", "")'
        for i, selector in enumerate(chosen)
    ]
    return "max(" + " or ".join(parts) + ")"


def sight_problem(
    answers: Iterable[Answer], newest: Answer | None, *, asked_at: datetime, bound_s: float
) -> str | None:
    """Why an arm's answers cannot be read as current, or None.

    ``newest`` answers :func:`newest_sample_query` (None: it was not asked).
    """
    at = asked_at.timestamp()
    every = [*answers, *([newest] if newest is not None else [])]
    for answer in every:
        for series in answer.series:
            if series.at is not None and not _near(series.at, at, bound_s):
                return f"an answer dated {_date(series.at)}, not when it was asked: implausible"
    if newest is None:
        return None
    if not newest.series:
        return (
            "no current sample of its series: not scraped now (a target down or"
            " unscraped, relabelled away, or matching nothing)"
        )
    sampled = max(series.value for series in newest.series)
    if not _near(sampled, at, bound_s):
        if math.isfinite(sampled) and at - sampled > 0:
            return (
                f"its newest sample is {at - sampled:.0f} s old (dated {_date(sampled)}),"
                f" over the {bound_s:g} s allowed: not scraped since"
            )
        return f"its newest sample is dated {_date(sampled)}, after it was asked: implausible"
    return None


def _near(when: float, at: float, bound_s: float) -> bool:
    return math.isfinite(when) and abs(when - at) <= bound_s


def _date(seconds: float) -> str:
    if not math.isfinite(seconds) or abs(seconds) > 1e11:
        return repr(seconds)
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
