"""Absolute limits: the gate of a stage that serves 100% of its audience.

Such a stage has no concurrent control, so nothing is compared: the treated
units' own rates are tested against limits the plan declares
(``limits: {error_rate: 0.01, latency_p95_ms: 200}``), and the evidence says
``comparison: none (no concurrent control)``.

Each limit is a one-sided test of one rate against a fixed value, with the
boundary of :mod:`controller.core.stats.sequential`, so it is valid under
continuous peeking like the guardrails: for a rate ``f`` of ``n`` trials
against the limit ``L``, Δ = f and the tolerance is L, with the variance at
least the limit's own, ``max(f(1 - f), L(1 - L)) / n`` (as the guardrails use
at least the null's). It is breached iff ``f - L`` exceeds the half-width.

* ``error_rate``: errors per request;
* ``latency_p95_ms`` / ``latency_p99_ms``: p95 ≤ X is the share of requests
  slower than X at most 5% (1% for p99); slower is counted from the
  histogram's first bucket at or above X (:func:`latency.exceedance_bucket`),
  so X is read at most about 12% higher.
"""

from __future__ import annotations

from controller.core.rollouts import Limits
from controller.core.stats.aggregates import ArmAggregate
from controller.core.stats.latency import exceedance_bucket
from controller.core.stats.sequential import SequentialResult, difference_test
from controller.core.wire import GateEvidence, GuardrailTest, LimitTest

NO_CONTROL = "none (no concurrent control)"
"""What the evidence of a stage without control says its comparison is."""
QUANTILE_SHARES = {"latency_p95_ms": 0.05, "latency_p99_ms": 0.01}
"""The share of requests a latency limit lets be slower than it."""


def rate_test(count: int, n: int, limit: float, *, alpha: float, n_tune: int) -> SequentialResult:
    """Whether a rate of ``count`` in ``n`` is shown above ``limit`` (sequential, one-sided)."""
    rate = count / n if n else 0.0
    null = limit * (1.0 - limit)
    variance = max(rate * (1.0 - rate), null) / n if n else float("inf")
    return difference_test(
        delta=rate,
        variance=variance,
        n=n,
        direction="lower_is_better",
        tolerance=limit,
        alpha=alpha,
        n_tune=n_tune,
    )


def limit_tests(
    limits: Limits, treated: ArmAggregate, *, alpha: float, n_tune: int
) -> dict[str, SequentialResult]:
    """Each declared limit's test on the treated units' counts."""
    out: dict[str, SequentialResult] = {}
    for name, value in limits.named().items():
        if name == "error_rate":
            count, n, limit = treated.errors, treated.requests, value
        else:
            hist = treated.latency_histogram
            count, n = sum(hist[exceedance_bucket(value) :]), sum(hist)
            limit = QUANTILE_SHARES[name]
        out[name] = rate_test(count, n, limit, alpha=alpha, n_tune=n_tune)
    return out


def limit_parts(
    limits: Limits, tests: dict[str, SequentialResult]
) -> dict[str, str | dict[str, LimitTest]]:
    """What the decision records: no comparison, and each limit with its test."""
    return {
        "comparison": NO_CONTROL,
        "limits": {
            name: LimitTest(limit=value, test=GuardrailTest.model_validate(tests[name].evidence()))
            for name, value in limits.named().items()
        },
    }


def comparison_text(evidence: GateEvidence) -> str:
    """A gate's evidence without a control in words, or "" for a comparison of two arms.

    ``none (no concurrent control): gated on absolute limits: error_rate: 1.2% (limit 1%,
    breached); latency_p95_ms: 3.1% of requests slower than 200 ms (at most 5%, not shown
    above)``; what the console, ``rolloutctl status`` and the report show.
    """
    if evidence.comparison != NO_CONTROL:
        return ""
    parts = []
    for name, entry in (evidence.limits or {}).items():
        verdict = "breached" if entry.test.regressed else "not shown above"
        parts.append(f"{name[:32]}: {_limit_text(name, entry, verdict)}")
    return f"{NO_CONTROL}: gated on absolute limits: " + ("; ".join(parts) or "none declared")


def _limit_text(name: str, entry: LimitTest, verdict: str) -> str:
    """One limit's observed share against what it allows, each with its unit."""
    observed, limit = entry.test.delta, entry.limit
    allowed = QUANTILE_SHARES.get(name)
    if allowed is None:  # error_rate: the limit is itself a share of requests
        return f"{_percent(observed)} (limit {_percent(limit)}, {verdict})"
    seen = f"{_percent(observed)} of requests slower than {limit:g} ms"
    return f"{seen} (at most {_percent(allowed)}, {verdict})"


def _number(value: object) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None  # type: ignore[arg-type]


def _percent(share: object) -> str:
    """A share (0.012) as a percentage ("1.2%"); "?" for anything else."""
    value = _number(share)
    return "?" if value is None else f"{value * 100:.3g}%"
