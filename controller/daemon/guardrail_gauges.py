"""The guardrail gauges on /metrics: each active rollout's tests as its last gate saw them."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge

from controller.core.common import CONVERSION_NAME_PATTERN
from controller.core.rollouts import CONVERSION_METRICS, Metric, Verdict, conversion_of, metric_of
from controller.core.wire import GuardrailTest

METRICS: frozenset[str] = frozenset(get_args(Metric))
"""The ``metric`` label values: the plan's fixed set, whatever evidence says, and a
conversion metric with the conversion its guardrail names (``conversion_rate:checkout_completed``,
one per guardrail of the plan, the name bounded by the plan's pattern)."""
_NAME = re.compile(CONVERSION_NAME_PATTERN)
_FIELDS = ("delta", "lower", "upper", "p_value")


class GuardrailGauges:
    """Each active rollout's guardrail tests and SRM check, as the last gate saw them.

    Label cardinality is bounded: ``metric`` takes only :data:`METRICS` (a guardrail naming a
    conversion adds its name: at most the plan's guardrails per flag), and at
    most ``max_flags`` flags are tracked at once (a gate verdict for one more
    is counted in ``rollout_guardrail_untracked`` instead). A flag's series go
    when its rollout ends or another instance takes it over.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        labels, r = ["flag", "metric"], registry
        self._gauges = {
            "delta": Gauge(
                "rollout_guardrail_delta", "Guardrail Δ, treatment - control.", labels, registry=r
            ),
            "lower": Gauge(
                "rollout_guardrail_lower", "Lower sequential bound of Δ.", labels, registry=r
            ),
            "upper": Gauge(
                "rollout_guardrail_upper", "Upper sequential bound of Δ.", labels, registry=r
            ),
            "p_value": Gauge(
                "rollout_guardrail_p_value",
                "Sequential p-value of harm beyond the tolerance.",
                labels,
                registry=r,
            ),
        }
        self._limit = Gauge(
            "rollout_guardrail_tolerance",
            "The Δ where harm begins: +tolerance if lower is better, -tolerance if higher is.",
            labels,
            registry=r,
        )
        self._regressed = Gauge(
            "rollout_guardrail_regressed",
            "1 while the sequential bound lies beyond the tolerance on the harmful side.",
            labels,
            registry=r,
        )
        self._srm = Gauge(
            "rollout_srm_p_value",
            "Sequential p-value of the sample-ratio check.",
            ["flag"],
            registry=r,
        )
        self.untracked = Counter(
            "rollout_guardrail_untracked",
            "Gate verdicts not exported per guardrail: the flag limit was reached.",
            registry=r,
        )
        self._series: dict[str, set[str]] = {}

    def record(self, flag: str, verdict: Verdict, *, max_flags: int) -> bool:
        """Set ``flag``'s gauges from the gate's ``verdict``; False when over the limit."""
        if flag not in self._series and len(self._series) >= max_flags:
            self.untracked.inc()
            return False
        tested = _tests(verdict.evidence.guardrails or {})
        for metric in self._series.get(flag, set()) - tested.keys():
            self._remove(flag, metric)
        for metric, test in tested.items():
            self._set(flag, metric, test)
        self._series[flag] = set(tested)
        srm = verdict.evidence.srm
        if srm is None:
            _discard(self._srm, flag)
        else:
            self._srm.labels(flag).set(float(srm.sequential_p_value))
        return True

    def forget(self, flag: str) -> None:
        """Remove every series of ``flag`` (its rollout ended)."""
        for metric in self._series.pop(flag, set()):
            self._remove(flag, metric)
        _discard(self._srm, flag)

    def retain(self, flags: Iterable[str]) -> None:
        """Forget every flag not in ``flags`` (those this instance no longer gates)."""
        keep = set(flags)
        for flag in [f for f in self._series if f not in keep]:
            self.forget(flag)

    def _set(self, flag: str, metric: str, test: GuardrailTest) -> None:
        for name in _FIELDS:
            self._gauges[name].labels(flag, metric).set(float(getattr(test, name)))
        tolerance = float(test.tolerance)
        harmful_up = test.direction != "higher_is_better"
        self._limit.labels(flag, metric).set(tolerance if harmful_up else -tolerance)
        self._regressed.labels(flag, metric).set(1.0 if test.regressed else 0.0)

    def _remove(self, flag: str, metric: str) -> None:
        for gauge in (*self._gauges.values(), self._limit, self._regressed):
            _discard(gauge, flag, metric)


def _tests(tests: Mapping[str, GuardrailTest | str]) -> dict[str, GuardrailTest]:
    """The guardrail tests with a result, by metric ("insufficient data" has none)."""
    return {m: t for m, t in tests.items() if _labelled(m) and isinstance(t, GuardrailTest)}


def _labelled(key: object) -> bool:
    """Whether a guardrail's key is a ``metric`` label value (see :data:`METRICS`)."""
    if not isinstance(key, str):
        return False
    name = conversion_of(key)
    if name is None:
        return key in METRICS
    return metric_of(key) in CONVERSION_METRICS and _NAME.fullmatch(name) is not None


def _discard(gauge: Gauge, *labels: str) -> None:
    # remove() raises KeyError for a series never set: absent is what we want
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)
