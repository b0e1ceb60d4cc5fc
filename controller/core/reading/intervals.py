"""How an interval is written for people: as few digits as keep its relation to the
tolerance, and why it is as wide as it is.

Two significant digits of the largest magnitude shown are enough to read an
interval, but not to read a verdict: a lower bound of +0.39 pp against a
tolerance of 0 written "[0, +13]" hides why the flag was rolled back. So the
interval (and its point estimate) gets one more place at a time until every
value strictly above the tolerance's edge prints above it and every value
strictly below prints below; a value equal to the edge prints equal to it.
The edge is written at the same rounding (:attr:`Rounded.limit`), so the
tolerance beside the interval says the same. Rounding is monotone, so a value
never prints on the other side of the edge, only, at worst, equal to it: each
added place rules that out. A value too close to the edge for
:data:`MAX_PLACES` places (or too tiny beside a zero tolerance) is written with
the shortest digits that tell it apart exactly, as is the edge then.

Why an interval is as wide as it is, in words: the gate tests each guardrail
on the unit of assignment (:mod:`controller.core.stats.on_units`): a unit that
sends many requests, or fails most of its own, makes the interval wider than it
would be were every request independent, and a stage then needs more units (more
time) to see the same difference. A guardrail's evidence says by how much
(:class:`~controller.core.wire.evidence.GuardrailTest`'s ``widening``), and a
Prometheus guardrail, whose series carry no unit, says it was tested on requests
taken as independent. :func:`widening_text` puts either in one sentence, the same
for the console, ``rolloutctl status`` and ``rolloutctl report``; where one bucket of
units carries most of the variance (the evidence's ``dominant``: in practice one bot or
broken account), :func:`dominant_text` says which arm and how much.

Pure; values in the unit they are shown in (percentage points, ms, the
metric's own), the edge signed: ``+tolerance`` when lower is better, ``-tolerance``
when higher is better. The evidence may come from a topic or over the network: a
widening that is no finite number says nothing, and a huge one is capped in the text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from controller.core.stats import dominance_text
from controller.core.wire import GuardrailTest

MAX_PLACES = 6
"""The most decimal places an interval is written with before its exact digits are."""
HUGE = 1e15
"""From this magnitude on a value is written with two significant digits: ``+1.2e+18``."""


def signed(value: float, decimals: int) -> str:
    """``value`` with its sign at ``decimals`` places: ``+3.6``, ``-0.05``, ``+1,234``.

    What rounds to zero is ``0`` (no sign); a huge value is written with two
    significant digits (``+1.2e+18``).
    """
    if round(value, decimals) == 0:
        return "0"
    if abs(value) >= HUGE:
        return f"{value:+.2g}"
    return f"{value:+,.{decimals}f}"


def decimals_for(scale: float) -> int:
    """Places that show two significant digits of ``scale`` (the largest magnitude shown)."""
    if not math.isfinite(scale) or scale >= 10 or scale == 0:
        return 0
    if scale >= 1:
        return 1
    return min(6, 1 - math.floor(math.log10(scale)))


@dataclass(frozen=True, slots=True)
class Rounded:
    """An interval's values as written: each signed (``+0.4``, ``0``, ``-1.2``); a value that
    is not a finite number is ``""`` (its reader says why instead)."""

    delta: str
    lower: str
    upper: str
    limit: str
    """The tolerance's edge at the same rounding; ``""`` when none was given."""
    places: int
    """The decimal places the values are written with."""


def rounded_interval(
    delta: float, lower: float, upper: float, limit: float | None = None
) -> Rounded:
    """``delta`` and its interval ``[lower, upper]`` written as their relation to ``limit``
    (the tolerance's signed edge) requires; without ``limit``, two significant digits."""
    values = (delta, lower, upper)
    finite = [v for v in values if math.isfinite(v)]
    places = decimals_for(max((abs(v) for v in finite), default=0.0))
    if limit is None or not math.isfinite(limit):
        return _rounded([_written(v, places) for v in values], "", places)
    needs = {v: _separating(v, limit, places) for v in finite}
    places = max((n for n in needs.values() if n is not None), default=places)
    close = [needs.get(v, places) is None for v in values]
    texts = [_written(v, places, exact=c) for v, c in zip(values, close, strict=True)]
    edge = _written(limit, max(places, decimals_for(abs(limit))), exact=any(close))
    return _rounded(texts, edge, places)


def _rounded(texts: Sequence[str], limit: str, places: int) -> Rounded:
    delta, lower, upper = texts
    return Rounded(delta=delta, lower=lower, upper=upper, limit=limit, places=places)


def _separating(value: float, limit: float, places: int) -> int | None:
    """The fewest places from ``places`` on that keep ``value`` on its side of ``limit``;
    None past :data:`MAX_PLACES`. A value equal to it needs the places ``limit`` is written
    with, so both read the same."""
    if value == limit:
        return max(places, decimals_for(abs(limit)))
    while not _apart(value, limit, places):
        if places >= MAX_PLACES:
            return None
        places += 1
    return places


def _apart(value: float, limit: float, places: int) -> bool:
    """Whether ``value`` and ``limit`` read differently at ``places`` (as :func:`signed`
    writes them: a huge value with two significant digits)."""
    return _as_read(value, places) != _as_read(limit, places)


def _as_read(value: float, places: int) -> float:
    if abs(value) >= HUGE:
        return float(f"{value:.2g}")
    return float(f"{value:.{places}f}")


def _written(value: float, places: int, *, exact: bool = False) -> str:
    """``value`` as :func:`signed` writes it; ``exact``: its shortest digits that read back
    as the same number (beside a value it must not read equal to)."""
    if not math.isfinite(value):
        return ""
    if exact and value != 0:
        return f"{value:+}"
    return signed(value, places)


# -- how wide: what units cost an interval, in words ------------------------------------

WIDENING_SHOWN = 1.05
"""Below this widening (5% wider) the interval is as if requests were independent: no word."""
MAX_TIMES_SHOWN = 1_000.0
"""A factor above this is written as ``over 1,000 times``."""
INDEPENDENT_REQUESTS = (
    "assumes independent requests: its interval is not widened for units that send many"
    " requests or fail together"
)
"""What a guardrail tested on requests says of itself: a Prometheus guardrail (a series
carries no unit), or any guardrail of a gate from before tests were taken on units."""


def widening_text(test: GuardrailTest) -> str:
    """How much units widen ``test``'s interval and what that costs the stage, or that it
    assumes independent requests; empty when there is nothing to say.

    ``units that send many requests or fail together make the interval 2.3 times as wide: the
    stage needs about 5.3 times as many units to see the same difference``
    """
    if test.unit_of_analysis == "request":
        return INDEPENDENT_REQUESTS
    widening = test.widening
    if widening is None or not math.isfinite(widening) or widening <= WIDENING_SHOWN:
        return ""
    return (
        f"units that send many requests or fail together make the interval"
        f" {times(widening)} as wide: the stage needs about {times(widening * widening)} as many"
        " units to see the same difference"
    )


def dominant_text(test: GuardrailTest) -> str:
    """The bucket of units that carries most of ``test``'s variance, in the gate's words;
    empty when the evidence names none.

    ``one bucket of units in treatment sent 41% of its events and carries 93% of its
    variance: most likely one unit (a bot, a broken account) decides this metric``
    """
    found = test.dominant
    return "" if found is None else dominance_text(found)


def times(factor: float) -> str:
    """``2.3 times``, ``12 times``, ``over 1,000 times``: a factor as people read one."""
    if factor > MAX_TIMES_SHOWN:
        return f"over {MAX_TIMES_SHOWN:,.0f} times"
    return f"{factor:.1f} times" if factor < 9.95 else f"{factor:,.0f} times"
