"""Why a guardrail's interval is as wide as it is, in words: its variance on units.

The gate tests each guardrail on the unit of assignment
(:mod:`controller.core.stats.on_units`): a unit that sends many requests, or
fails most of its own, makes the interval wider than it would be were every
request independent, and a stage then needs more units (more time) to see the
same difference. A guardrail's evidence says by how much
(:class:`~controller.core.wire.evidence.GuardrailTest`'s ``widening``), and a
Prometheus guardrail, whose series carry no unit, says it was tested on requests
taken as independent. :func:`widening_text` puts either in one sentence, the same
for the console, ``rolloutctl status`` and ``rolloutctl report``.

Pure. The evidence may come from a topic or over the network: a widening that
is no finite number says nothing, and a huge one is capped in the text.
"""

from __future__ import annotations

import math

from controller.core.wire import GuardrailTest

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


def times(factor: float) -> str:
    """``2.3 times``, ``12 times``, ``over 1,000 times``: a factor as people read one."""
    if factor > MAX_TIMES_SHOWN:
        return f"over {MAX_TIMES_SHOWN:,.0f} times"
    return f"{factor:.1f} times" if factor < 9.95 else f"{factor:,.0f} times"
