"""What a running stage can catch, from its own test: the preview of
:mod:`controller.core.stats.power` at the stage's current traffic.

Pure; standard library only. A guardrail's test in the stage's evidence has its variance
V and its N after ``elapsed_s`` seconds; at the same traffic V shrinks as 1/t and N grows
as t, so after t seconds the smallest regression detected with 80% power is
δ + h(N·t/t₀, V·t₀/t) + z_0.8·√(V·t₀/t), with the same approximation as the preview's
(V taken at the observed data, not at the regression); with a final look, h is the smaller
of the boundary's and the fixed-horizon test's z·√V at the stage's end.

Both searches for the time a regression needs share :func:`first_time`, so the planned
stage's (:func:`seconds_to_detect`, over the preview's :func:`~.power.detectable`) lives
here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

from controller.core.rollouts import Guardrail, Plan
from controller.core.stats.power import MAX_SECONDS, STEPS, Z_POWER, detectable
from controller.core.stats.regressing import Traffic
from controller.core.stats.sequential import sequential_half_width, sequential_rho

_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class Observed:
    """A guardrail's test in a running stage, as its evidence has it, and how long it ran."""

    variance: float
    n: int
    tolerance: float
    alpha: float
    n_tune: int
    elapsed_s: float
    final_alpha: float | None = None
    """The level of the stage's final look, where it has one: its fixed-horizon test shows
    harm at the stage's end where the boundary would not yet."""

    def delta_at(self, seconds: float) -> float | None:
        """The smallest Δ (harmful side) detected with 80% power after ``seconds`` in the
        stage, V shrinking as 1/t and N growing as t; None when the test has no figure."""
        known = self.elapsed_s > 0 and self.n > 0 and self.n_tune > 0
        if not (known and 0.0 < self.variance < math.inf and 0.0 < self.alpha < 0.5):
            return None
        scale = seconds / self.elapsed_s
        variance, n = self.variance / scale, max(1, round(self.n * scale))
        rho = sequential_rho(self.alpha, self.n_tune)
        h = sequential_half_width(variance=variance, n=n, alpha=self.alpha, rho=rho)
        if self.final_alpha is not None and 0.0 < self.final_alpha < 0.5:
            h = min(h, _NORMAL.inv_cdf(1.0 - self.final_alpha) * math.sqrt(variance))
        return self.tolerance + h + Z_POWER * math.sqrt(variance)


def observed_detectable(test: Observed, seconds: float, base: float | None) -> float | None:
    """The smallest regression relative to ``base`` detected with 80% power after
    ``seconds`` in the stage (its end, or now); None without a figure or a base."""
    delta = test.delta_at(seconds)
    if delta is None or base is None or base == 0.0:
        return None
    return delta / abs(base)


def observed_seconds_to_detect(test: Observed, base: float | None, effect: float) -> float | None:
    """How much longer the stage needs to detect a regression of relative size ``effect``
    (0 when it already can); None beyond :data:`MAX_SECONDS` or without a figure."""
    if base is None or base == 0.0 or test.delta_at(test.elapsed_s) is None:
        return None

    def caught(seconds: float) -> bool:
        delta = test.delta_at(seconds)
        return delta is not None and delta <= effect * abs(base)

    at = first_time(caught, test.elapsed_s)
    return None if at is None else at - test.elapsed_s


def seconds_to_detect(
    plan: Plan, index: int, guardrail: Guardrail, traffic: Traffic, effect: float
) -> float | None:
    """How long stage ``index`` must run at ``traffic`` to detect a regression of relative
    size ``effect`` with 80% power; None beyond :data:`MAX_SECONDS`."""
    percent = plan.stages[index].percent

    def caught(seconds: float) -> bool:
        found = detectable(guardrail, percent, seconds, traffic, plan)
        return found.effect is not None and found.effect <= effect

    return first_time(caught, 1.0)


def first_time(caught: Callable[[float], bool], start: float) -> float | None:
    """The earliest time in [start, MAX_SECONDS] at which ``caught`` (monotone) holds."""
    if caught(start):
        return start
    if not caught(MAX_SECONDS):
        return None
    low, high = start, MAX_SECONDS
    for _ in range(STEPS):
        middle = math.sqrt(low * high)  # times span decades: bisect their logarithm
        if caught(middle):
            high = middle
        else:
            low = middle
    return high
