"""What the running stage can catch, in words: for ``rolloutctl status`` and the console.

From each guardrail's own test in the stage's evidence and the time the stage has run,
:func:`running_lines` says the smallest regression the stage detects with 80% power by
the end of its minimum at its current traffic, and how much longer it needs to detect a
regression of a given size (:mod:`controller.core.stats.power`, *a running stage*).

Pure. The evidence may come from an older controller: a test without its variance, N,
level or ``n_tune`` has no figure, and says nothing.
"""

from __future__ import annotations

from controller.core.reading.views import RolloutView
from controller.core.reading.wording import metric_name
from controller.core.rollouts import COUNT_METRICS, conversion_of, metric_of
from controller.core.stats import (
    POWER,
    Observed,
    observed_detectable,
    observed_seconds_to_detect,
    share_text,
)
from controller.core.wire import ArmTally, GateEvidence
from controller.core.wire import GuardrailTest as WireTest

DEFAULT_EFFECT = 0.5
"""The regression the running stage's remaining time is given for: +50% (or -50%)."""


def span_text(seconds: float) -> str:
    """``45 s``, ``30 min``, ``2 h 30 min``, ``3.5 d``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{seconds / 86_400:.1f} d"


def running_lines(status: RolloutView, effect: float = DEFAULT_EFFECT) -> list[str]:
    """Per guardrail of the running stage with a figure: ``error rate: `` and
    :func:`running_text`."""
    found = ((key, running_text(status, key, effect)) for key, _ in _tests(status.evidence))
    return [f"{metric_name(key)}: {said}" for key, said in found if said]


def running_text(status: RolloutView, key: str, effect: float = DEFAULT_EFFECT) -> str:
    """What the running stage detects of guardrail ``key`` by the end of its minimum at its
    current traffic, and how much longer it needs for a regression of ``effect``; '' while
    there is no figure (not gated, no test yet, or a test without its numbers)."""
    test = dict(_tests(status.evidence)).get(key)
    if test is None or status.verdict is None or status.time_in_stage_s <= 0:
        return ""
    evidence = status.evidence
    base = _base(key, evidence, _control_rate(key, (evidence.arms or {}).get("control")))
    observed = _observed(test, status.time_in_stage_s)
    end = max(status.min_duration_s, status.time_in_stage_s)
    at_end = None if observed is None else observed_detectable(observed, end, base)
    if observed is None or at_end is None:
        return ""
    sign = "+" if test.direction == "lower_is_better" else "-"
    more = observed_seconds_to_detect(observed, base, effect)
    when = "now" if more == 0 else f"in {span_text(more)} more" if more else "in over 30 days"
    return (
        f"detectable from {sign}{share_text(at_end)} by the stage's minimum"
        f" ({POWER:.0%} power); {sign}{share_text(effect)} {when}"
    )


def _observed(test: WireTest, elapsed_s: float) -> Observed | None:
    """The test's figures, when it has them all (one from an older gate may not)."""
    fields = (test.variance, test.n, test.tolerance, test.alpha, test.n_tune)
    if any(not isinstance(x, int | float) for x in fields):
        return None
    try:
        return Observed(test.variance, int(test.n), test.tolerance, test.alpha,
                        int(test.n_tune), elapsed_s)  # fmt: skip
    except (TypeError, ValueError):
        return None


def _control_rate(key: str, control: ArmTally | None) -> float | None:
    """The control's error rate, conversion rate (of the conversion a key names), or crashes
    or exceptions per exposure (None while it has none: a relative figure needs a base)."""
    if control is None:
        return None
    metric, name = metric_of(key), conversion_of(key)
    if metric in COUNT_METRICS and control.exposures:
        count = control.crashes if metric == "crash_count" else control.exceptions
        return count / control.exposures if count else None
    if metric == "error_rate" and control.requests:
        return control.errors / control.requests
    if metric == "conversion_rate" and control.exposures:
        hits = (control.named_conversions or {}).get(name, 0) if name else control.conversions
        return min(hits, control.exposures) / control.exposures
    return None


def _base(key: str, evidence: GateEvidence, rate: float | None) -> float | None:
    """What a relative figure is taken against: the control's rate, or its quantile."""
    if rate is not None:
        return rate
    latency = (evidence.latency or {}).get("control")
    if latency is not None and key in ("latency_p95", "latency_p99"):
        return latency.p95 if key == "latency_p95" else latency.p99
    return None


def _tests(evidence: GateEvidence) -> list[tuple[str, WireTest]]:
    tests = evidence.guardrails or {}
    return [(key, test) for key, test in tests.items() if isinstance(test, WireTest)]
