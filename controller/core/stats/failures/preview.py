"""The smallest new failure a stage catches: ``new_failures``' test of one fingerprint, read
backwards on an exact count.

Pure; standard library only. A failure new in treatment, on a share r of its exposures and
none of control's, is counted X times in treatment by the stage's end. The gate tests its
fingerprint (:mod:`.testing`) as a count per exposure on units against none: Δ̂ = X/n_T and
V̂ = V(X)·max(1, d̂), with V(X) about X/n_T² (the count's own Poisson variance, with the gate's
floors: half an event in control, the pooled null) and d̂ the design effect it reads from its
unit buckets. The always-valid boundary's width is √V̂ times a factor c of N and the level
alone (each fingerprint's: the guardrail's over :data:`~.testing.TESTS`), so the test regresses
exactly when

    X/n_T - δ > c·√(V(X)·max(1, d̂))

and the count must pass a threshold of about c²·d̂ failures: 24 to 27 in the default plan's
stages, where c is 4.9 to 5.1. That is why the chance is taken on the count itself. The
normal approximation of :mod:`controller.core.stats.power` (Δ̂ normal around Δ, the width at
the V of the true rate) reads it as √λ = c + z_0.8 and asks λ = 32.8 failures in the 1%
stage where 28.0 reach the threshold four times in five: at its figure the gate catches 95%.

**The final look is not counted.** A stage's final look tests the one result the guardrail
reads, the least proven of its tests, the widest bound (:func:`~.testing.deciding`); that is
a failure common to both arms wherever one is, not a rare new one (``bench/new_failures.py``:
in the default plan's 5% stage, the look read the new failure's test in none of 95 runs).
Were it to test the new failure's own count (``final_look``), its z at the look's share of
the level over the tests, 3.67 in the default plan, would ask 14 failures, not 24.

**The count.** X is Poisson of mean λ = r·n_T where units are alike (the traffic's design
effect d = 1), and over-dispersed where a failure clusters by unit as the traffic's other
metrics do: negative binomial of mean λ and variance d·λ. The gate's d̂ is taken as d times
a χ² over its degrees of freedom, those of treatment's buckets alone (control holds none of
the failure: :func:`~controller.core.stats.arm_contents.estimate_degrees`); the chance of
each count is averaged over it (Wilson and Hilferty's cube of a normal, 1931). Where the
traffic names heavy units the chance is averaged over the smaller arm's contents too, as
the other guardrails' are (:mod:`controller.core.stats.arm_contents`); a content in which
one unit sends over half of an arm's requests is not tested (the gate holds the guardrail).

Only the stage's last look is counted: the always-valid boundary looks all along and may
cross sooner, so the gate catches the figure somewhat more often. The figure holds while
the store counts the failure under its own name, one of the 16 counted most over both arms
(docs/architecture.md, "What broke").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from statistics import NormalDist

from controller.core.rollouts import Guardrail, Plan
from controller.core.stats.arm_contents import arm_contents, estimate_degrees
from controller.core.stats.failures.testing import TESTS
from controller.core.stats.heaviest.deciding import DECIDING_SHARE
from controller.core.stats.regressing import Arms, Traffic, arms_at, short_of_floor, units_behind
from controller.core.stats.sequential import (
    poisson_variance,
    sequential_half_width,
    sequential_rho,
)

STEPS = 24
"""Bisection steps between a rate and its double: to 6e-8 of the figure."""
_NORMAL = NormalDist()
_TAIL = 9.0
"""Standard deviations of the count summed on either side of its mean."""
_POISSON_SIZE = 1e7
"""A negative binomial's size past which it is taken as Poisson (its log-gammas would cancel)."""


def rate_text(rate: float) -> str:
    """A share of requests in percent to two digits: ``1.7%``, ``0.16%``, ``0.0042%``; whole
    from 10%."""
    percent = rate * 100.0
    return f"{percent:.2g}%" if percent < 10.0 else f"{percent:.0f}%"


def smallest_new_failure(
    guardrail: Guardrail,
    percent: float,
    seconds: float,
    traffic: Traffic,
    plan: Plan,
    *,
    power: float,
    final_look: bool = False,
) -> tuple[float | None, str]:
    """The smallest share of treatment's exposures a failure new in treatment may have and be
    caught with chance ``power`` by the end of ``seconds`` of a stage serving ``percent``;
    None with the reason where the stage catches none. ``final_look``: were the stage's final
    look to test the failure's own count (see the module: it does not)."""
    if not 0 < percent < 100:
        return None, "no control arm to compare against"
    arms = arms_at(percent, traffic, seconds)
    short = short_of_floor(guardrail, arms, plan, traffic)
    if short:
        return None, short
    looks = [
        (weight, look_at(guardrail, content, traffic, plan, final_look=final_look))
        for weight, content in arm_contents(percent, traffic, arms)
    ]
    tested = math.fsum(weight for weight, look in looks if look is not None)
    if tested < power:
        return None, (
            f"detects no new failure with {power:.0%} power: the gate tests it in only"
            f" {tested:.0%} of stages, where no heavy unit sends over half of an arm's requests"
        )
    found = smallest_rate(looks, arms.requests[0], power)
    return (found, "") if found is not None else (None, "detects no new failure")


@dataclass(slots=True)
class LastLook:
    """What the gate's last look at a stage's end asks of the new failure's count."""

    exposures: tuple[float, float]
    """Treatment's and control's exposures."""
    width: float
    """c: the last look's width over √V̂ (the smaller of the boundary's and the final look's)."""
    tolerance: float
    """δ, a share of treatment's exposures (a relative tolerance of a rate of 0 is 0)."""
    deff: float
    """d: the failure's design effect, and the over-dispersion of its count."""
    degrees: float
    """The degrees of freedom of the gate's d̂."""
    passes: dict[int, float] = field(default_factory=dict)
    """The chance the look regresses at each count, worked out as the counts are reached."""

    def chance_at(self, count: int) -> float:
        """The chance the look regresses on a count of ``count``, over the gate's d̂."""
        found = self.passes.get(count)
        if found is None:
            found = self.passes[count] = self._passing(count)
        return found

    def _passing(self, count: int) -> float:
        n_t, n_c = self.exposures
        margin = count / n_t - self.tolerance
        if margin <= 0.0:
            return 0.0
        own = poisson_variance(count, n_t) / n_t + poisson_variance(0, n_c) / n_c
        pooled = poisson_variance(count, n_t + n_c) * (1.0 / n_t + 1.0 / n_c)
        # Regressed iff max(1, d̂) < D: the largest design effect this count still shows.
        most = (margin / self.width) ** 2 / max(own, pooled)
        if most <= 1.0:
            return 0.0
        return below(most / self.deff, self.degrees)

    def chance(self, rate: float) -> float:
        """The chance the look regresses where the failure is on ``rate`` of treatment's
        exposures: over the count's distribution, within :data:`_TAIL` deviations of its
        mean."""
        mean = rate * self.exposures[0]
        spread = math.sqrt(self.deff * mean)
        low = max(0, math.floor(mean - _TAIL * spread - _TAIL))
        high = math.ceil(mean + _TAIL * spread + _TAIL)
        chances = count_chances(low, high, mean, self.deff)
        return math.fsum(
            chance * self.chance_at(count)
            for count, chance in enumerate(chances, start=low)
            if chance > 0.0
        )


def look_at(
    guardrail: Guardrail, arms: Arms, traffic: Traffic, plan: Plan, *, final_look: bool = False
) -> LastLook | None:
    """The last look on one content of the arms; None where the gate would not test it."""
    if short_of_floor(guardrail, arms, plan, traffic) or _held(arms, traffic):
        return None
    n = round(units_behind(guardrail, traffic, arms))
    if n <= 0:
        return None
    deff = traffic.effect_of(guardrail)
    heavy = None if arms.heavy is None else (arms.heavy[0], 0.0)
    alone = replace(arms, units=(arms.units[0], 0.0), heavy=heavy)  # control has none of it
    return LastLook(
        exposures=arms.requests,
        width=last_look_width(guardrail, plan, n, final_look=final_look),
        tolerance=0.0 if guardrail.relative else guardrail.tolerance,
        deff=deff,
        degrees=estimate_degrees(traffic, alone, deff),
    )


def _held(arms: Arms, traffic: Traffic) -> bool:
    """Whether a heavy unit sends over half of an arm's requests in this content."""
    if arms.heavy is None or traffic.heavy_share <= 0.0:
        return False
    return any(
        heavy >= 1.0 and traffic.heavy_requests > DECIDING_SHARE * requests
        for heavy, requests in zip(arms.heavy, arms.requests, strict=True)
    )


def last_look_width(guardrail: Guardrail, plan: Plan, n: int, *, final_look: bool = False) -> float:
    """c, the width of the gate's last look over √V̂ for the new failure's test at N = ``n``:
    the always-valid boundary's, at its level over the tests (the plan's share of it where a
    stage has a final look). ``final_look``: the smaller of it and the fixed-horizon test's z
    at the look's share over the tests, were the look to read the failure's own test."""
    key = guardrail.key
    looked = not guardrail.dry_run and plan.final_look_share > 0
    alpha = (plan.sequential_alpha(key) if looked else plan.alpha_for(key)) / TESTS
    rho = sequential_rho(alpha, plan.n_tune)
    width = sequential_half_width(variance=1.0, n=n, alpha=alpha, rho=rho)
    if not (final_look and looked):
        return width
    return min(width, _NORMAL.inv_cdf(1.0 - plan.final_alpha(key) / TESTS))


def below(share: float, degrees: float) -> float:
    """The chance a χ² over its ``degrees`` (divided by them) lies below ``share``: Wilson and
    Hilferty's cube of a normal; a step at 1 with infinitely many degrees."""
    if not math.isfinite(degrees):
        return 1.0 if share > 1.0 else 0.0
    step = 2.0 / (9.0 * degrees)
    return _NORMAL.cdf((share ** (1.0 / 3.0) - 1.0 + step) / math.sqrt(step))


def count_chances(low: int, high: int, mean: float, deff: float) -> list[float]:
    """The chances of ``low`` to ``high`` failures of mean ``mean``: Poisson with units alike
    (``deff`` 1), else negative binomial of variance ``deff`` times the mean; the first from
    its log-gammas, each next by the ratio of successive terms."""
    if mean <= 0.0:
        return [1.0 if count == 0 else 0.0 for count in range(low, high + 1)]
    size = mean / (deff - 1.0) if deff > 1.0 else math.inf
    if size > _POISSON_SIZE:  # Poisson: p(k + 1) = p(k)·λ/(k + 1)
        first = low * math.log(mean) - mean - math.lgamma(low + 1)
        grow = [mean] * (high - low)
    else:  # p(k + 1) = p(k)·(k + size)/(k + 1)·(1 - 1/d)
        keep = 1.0 - 1.0 / deff
        first = (
            math.lgamma(low + size)
            - math.lgamma(size)
            - math.lgamma(low + 1)
            - size * math.log(deff)
            + low * math.log(keep)
        )
        grow = [(count + size) * keep for count in range(low, high)]
    out = [math.exp(first)]
    for count, factor in enumerate(grow, start=low):
        out.append(out[-1] * factor / (count + 1))
    return out


def chance_of(looks: list[tuple[float, LastLook | None]], rate: float) -> float:
    """The chance a failure on ``rate`` of treatment's exposures is caught at the last look:
    each content of the arms weighed by its chance (one not tested adds nothing)."""
    return math.fsum(weight * look.chance(rate) for weight, look in looks if look is not None)


def smallest_rate(
    looks: list[tuple[float, LastLook | None]], exposures: float, power: float
) -> float | None:
    """The smallest rate caught with chance ``power``: from the rate that brings the first
    tested look's threshold count (about c²·d failures) to treatment's ``exposures``, doubled
    until caught (or halved until not), then bisected; None where every exposure failing is
    not."""
    first = next(look for _, look in looks if look is not None)
    high = min(1.0, max(1.0, first.width**2 * first.deff) / exposures)
    while chance_of(looks, high) < power:
        if high >= 1.0:
            return None
        high = min(1.0, 2.0 * high)
    low = high / 2.0
    while chance_of(looks, low) >= power:  # caught from the start: halve until it is not
        high, low = low, low / 2.0
    for _ in range(STEPS):
        middle = (low + high) / 2.0
        if chance_of(looks, middle) >= power:
            high = middle
        else:
            low = middle
    return high
