"""The expected traffic, and what a regression of relative size x does to each metric.

A stage's arms get their share of the traffic (:class:`Arms`); each guardrail's metric
is modelled as x → (Δ on the harmful side, V of the difference): a rate as two
proportions, a latency quantile as a log-normal's, its ranks widened by the design
effect. :mod:`controller.core.stats.power` reads the gate's boundary backwards over
these. What the gate needs of an arm before it tests (its floors) is here too. Pure;
standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from statistics import NormalDist

from controller.core.common import EDGES_MS
from controller.core.rollouts import Guardrail, Plan, Stage
from controller.core.stats.latency import QUANTILE_Z, exceedance_bucket, quantile_min_samples
from controller.core.stats.on_units import QUANTILES
from controller.core.stats.sequential import bernoulli_variance
from controller.core.stats.units import MIN_CLUSTERS

MAX_LATENCY_FACTOR = 100.0
"""A latency regression is looked for up to 100 times the base (+10,000%)."""
_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class Traffic:
    """What a flag's stages are expected to see, all arms together."""

    requests_per_s: float
    """Requests (flag evaluations) per second to the flag, treatment and control together."""
    requests_per_unit: float = 1.0
    """Requests each unit sends over a stage, on average."""
    design_effect: float = 1.0
    """V on units over V as if requests were independent, for guardrails not in
    ``design_effects`` (at least 1: the gate takes max(1, d))."""
    design_effects: Mapping[str, float] = field(default_factory=dict)
    """A guardrail's own design effect, by its key (read from a flag's evidence)."""
    error_rate: float = 0.01
    conversion_rate: float = 0.05
    value_mean: float = 1.0
    value_cv: float = 1.0
    """A conversion's value: its mean (in the value's unit, for an absolute tolerance) and
    its coefficient of variation, standard deviation over mean, all conversions together
    (1 for exponential values; about 2.5 for values log-normal with sigma 1.4)."""
    latency_median_ms: float = 100.0
    latency_sigma: float = 0.5
    """Latency is taken as log-normal: its median and the sigma of its logarithm."""
    heavy_share: float = 0.0
    heavy_requests: float = 0.0
    """A share of units that each send ``heavy_requests`` over a stage (power users, bots),
    included in ``requests_per_unit``; 0: units alike."""
    failing_share: float = 0.0
    failing_rate: float = 0.0
    """A share of units that fail ``failing_rate`` of their requests (broken accounts),
    included in ``error_rate``; 0: the regression keeps the base's design effect."""

    def __post_init__(self) -> None:
        checks = {
            "requests_per_s": self.requests_per_s > 0 and math.isfinite(self.requests_per_s),
            "requests_per_unit": 1.0 <= self.requests_per_unit < math.inf,
            "design_effect": 1.0 <= self.design_effect < math.inf,
            "error_rate": 0.0 < self.error_rate < 1.0,
            "conversion_rate": 0.0 < self.conversion_rate < 1.0,
            "value_mean": 0.0 < self.value_mean < math.inf,
            "value_cv": 0.0 < self.value_cv < math.inf,
            "latency_median_ms": 0.0 < self.latency_median_ms < math.inf,
            "latency_sigma": 0.0 < self.latency_sigma < 10.0,
            "heavy_share": 0.0 <= self.heavy_share < 1.0,
            "heavy_requests": self.heavy_share == 0.0
            or self.requests_per_unit <= self.heavy_requests < math.inf,
            "failing_share": 0.0 <= self.failing_share < 1.0,
            "failing_rate": self.failing_share == 0.0
            or self.error_rate <= self.failing_rate <= 1.0,
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if not wrong and self.light_requests() < 1.0:
            wrong.append("heavy_share and heavy_requests exceed requests_per_unit")
        if not wrong and self.failing_share * self.failing_rate > self.error_rate:
            wrong.append("failing_share and failing_rate exceed error_rate")
        if wrong or any(not 1.0 <= d < math.inf for d in self.design_effects.values()):
            raise ValueError(f"traffic out of range: {', '.join(wrong) or 'design_effects'}")

    def light_requests(self) -> float:
        """Requests each unit that is not heavy sends, on average."""
        heavy = self.heavy_share * self.heavy_requests
        return (self.requests_per_unit - heavy) / (1.0 - self.heavy_share)

    def effect_of(self, guardrail: Guardrail) -> float:
        """The design effect taken for ``guardrail``: 1 for a source with no units."""
        if guardrail.source != "events":
            return 1.0
        return max(1.0, self.design_effects.get(guardrail.key, self.design_effect))


# --- the arms of a stage ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arms:
    """Requests and units per arm (treatment, control) after a stage's first seconds."""

    requests: tuple[float, float]
    units: tuple[float, float]
    failing: float | None = None
    """The share of the treatment's units that fail (:attr:`Traffic.failing_share`) in this
    content of the arms; None: the traffic's share."""
    heavy: tuple[float, float] | None = None
    """Heavy units (:attr:`Traffic.heavy_share`) in each arm in this content; None: each
    arm's units times the traffic's share."""


def arms_at(percent: float, traffic: Traffic, seconds: float) -> Arms:
    share = percent / 100.0
    total = traffic.requests_per_s * seconds
    requests = (total * share, total * (1.0 - share))
    units = tuple(r / traffic.requests_per_unit for r in requests)
    return Arms(requests, (units[0], units[1]))


def stage_seconds(stage: Stage, traffic: Traffic) -> tuple[float, bool]:
    """How long the stage lasts at least: min_duration, or until its smaller arm has
    min_units_per_arm units; and whether the units set it."""
    share = min(stage.percent, 100.0 - stage.percent) / 100.0
    duration = stage.min_duration.total_seconds()
    if share <= 0 or stage.min_units_per_arm == 0:
        return duration, False
    per_s = traffic.requests_per_s * share / traffic.requests_per_unit
    needed = stage.min_units_per_arm / per_s
    return (needed, True) if needed > duration else (duration, False)


# --- each metric's difference and variance at a regression of relative size x ------------

Model = Callable[[float], tuple[float, float]]
"""x (the regression's relative size) → (Δ on the harmful side, V of the difference)."""


@dataclass(frozen=True, slots=True)
class Failing:
    """Units of two kinds behind the error rate's design effect: a share failing at a high
    propensity, the rest at a low one; ``weight`` is E[m²]/E[m] - 1 of the requests m per
    unit, read back from the design effect d at the base p:
    d·p(1 - p) = p(1 - p) + weight·Var(propensity)."""

    share: float
    high: float
    low: float
    weight: float

    def after(self, rate: float) -> tuple[float, float]:
        """Both propensities once every one is multiplied alike, capped at 1, to bring the
        traffic's rate to ``rate``."""
        s, high, low = self.share, self.high, self.low
        factor = rate / (s * high + (1.0 - s) * low)
        if factor * high <= 1.0:
            return high * factor, low * factor
        return 1.0, min(1.0, (rate - s) / (1.0 - s))


def failing_of(traffic: Traffic, deff: float) -> Failing | None:
    """The traffic's failing units as a :class:`Failing`; None where it names none."""
    s, high, base = traffic.failing_share, traffic.failing_rate, traffic.error_rate
    low = (base - s * high) / (1.0 - s)
    variance = s * (1.0 - s) * (high - low) ** 2
    if s <= 0.0 or variance <= 0.0:
        return None
    return Failing(s, high, low, max(0.0, deff - 1.0) * base * (1.0 - base) / variance)


def proportion_model(
    base: float,
    arms: Arms,
    worse: float,
    deff: float,
    failing: Failing | None = None,
    *,
    noise: bool = False,
) -> Model:
    """A rate that gets worse by ``worse`` (+1: up, -1: down) times x of itself.

    The control's variance per event is d·p(1 - p) at the base p, and so is the
    treatment's at its rate p' (the units' intra-unit correlation kept). Where the traffic
    says which units fail (``failing``), every unit's propensity is multiplied alike, a
    failing unit's capped at 1: the treatment's rate is that of the share of failing units
    it holds (:attr:`Arms.failing`), and its variance per request p'(1 - p') plus the
    units' spread, weight·s(1 - s)·(high - low)², which grows with the regression until
    the failing units saturate and shrinks after (docs/architecture.md, *What a stage can
    catch*).

    ``noise``: V of Δ̂ alone where the treatment's content is given (:attr:`Arms.failing`):
    the spread is which units landed in it, which the content fixes, so only the treatment's
    Bernoulli variance and the control's are left (the gate's V̂ still has the spread)."""
    n_t, n_c = arms.requests

    def model(x: float) -> tuple[float, float]:
        rate = min(1.0, max(0.0, base * (1.0 + worse * x)))
        rate_t, spread = rate, math.inf
        if failing is not None:
            high, low = failing.after(rate)
            s = failing.share if arms.failing is None else arms.failing
            rate_t = s * high + (1.0 - s) * low
            spread = failing.weight * s * (1.0 - s) * (high - low) ** 2
        treated = bernoulli_variance(rate_t * n_t, n_t)
        control = bernoulli_variance(base * n_c, n_c) * deff / n_c
        if noise and arms.failing is not None:
            return worse * (rate_t - base), treated / n_t + control
        treated = treated * deff if failing is None else treated + spread
        own = treated / n_t + control
        pooled_rate = (rate_t * n_t + base * n_c) / (n_t + n_c)
        pooled = bernoulli_variance(pooled_rate * (n_t + n_c), n_t + n_c) * (1 / n_t + 1 / n_c)
        return worse * (rate_t - base), max(own, pooled * deff)

    return model


def value_model(traffic: Traffic, arms: Arms, deff: float) -> Model:
    """Treatment's conversion values lower by a factor 1 - x, each arm's conversions its
    requests at the conversion rate: Δ of the means with the gate's V, the larger of the
    arms' own variances and the pooled one (within the arms), times the design effect."""
    mean, cv = traffic.value_mean, traffic.value_cv
    n_t, n_c = (r * traffic.conversion_rate for r in arms.requests)
    spread_c = (cv * mean) ** 2

    def model(x: float) -> tuple[float, float]:
        if n_t <= 0.0 or n_c <= 0.0:
            return mean * x, math.inf
        spread_t = spread_c * (1.0 - x) ** 2
        own = spread_t / n_t + spread_c / n_c
        pooled = (n_t * spread_t + n_c * spread_c) / (n_t + n_c) * (1.0 / n_t + 1.0 / n_c)
        return mean * x, max(own, pooled) * deff

    return model


def events_of(metric: str, traffic: Traffic, arms: Arms) -> tuple[float, float]:
    """Each arm's events of ``metric`` (what the gate's floors count): its conversions for the
    conversion value, its requests for the rest."""
    if metric == "conversion_value":
        rate = traffic.conversion_rate
        return arms.requests[0] * rate, arms.requests[1] * rate
    return arms.requests


def quantile_at(median: float, sigma: float, p: float) -> float:
    return median * math.exp(sigma * _NORMAL.inv_cdf(p))


def _quantile_se(median: float, sigma: float, q: float, n: float, deff: float) -> float:
    """Woodruff's SE of a log-normal's q-quantile from n events, ranks widened by ``deff``."""
    spread = QUANTILE_Z * math.sqrt(q * (1.0 - q) * deff / n)
    if q - spread <= 0.0 or q + spread >= 1.0:
        return math.inf
    high, low = quantile_at(median, sigma, q + spread), quantile_at(median, sigma, q - spread)
    return (high - low) / (2.0 * QUANTILE_Z)


def quantile_model(q: float, traffic: Traffic, arms: Arms, deff: float) -> Model:
    """Treatment's latency slower by a factor 1 + x throughout."""
    median, sigma = traffic.latency_median_ms, traffic.latency_sigma
    base = quantile_at(median, sigma, q)
    se_t = _quantile_se(median, sigma, q, arms.requests[0], deff)
    se_c = _quantile_se(median, sigma, q, arms.requests[1], deff)

    def model(x: float) -> tuple[float, float]:
        return base * x, ((1.0 + x) * se_t) ** 2 + se_c**2

    return model


def exceedance_share(edge_ms: float, traffic: Traffic) -> float:
    """The share of a log-normal latency at or above the bucket edge the gate rounds to."""
    first = exceedance_bucket(edge_ms)
    edge = EDGES_MS[first - 1] if 0 < first <= len(EDGES_MS) else 0.0
    if edge <= 0.0:
        return 1.0
    z = math.log(edge / traffic.latency_median_ms) / traffic.latency_sigma
    return 1.0 - _NORMAL.cdf(z)


def base_of(guardrail: Guardrail, traffic: Traffic) -> float:
    metric = guardrail.metric
    if metric == "error_rate":
        return traffic.error_rate
    if metric == "conversion_rate":
        return traffic.conversion_rate
    if metric == "conversion_value":
        return traffic.value_mean
    if metric in QUANTILES:
        return quantile_at(traffic.latency_median_ms, traffic.latency_sigma, QUANTILES[metric])
    assert guardrail.edge_ms is not None  # latency_exceedance: the plan model guarantees it
    return exceedance_share(guardrail.edge_ms, traffic)


def tolerance_of(guardrail: Guardrail, base: float) -> float:
    """δ as the gate takes it: a quantile's tolerance counts only when relative."""
    if guardrail.relative:
        return guardrail.tolerance * base
    return 0.0 if guardrail.metric in QUANTILES else guardrail.tolerance


def metric_model(
    guardrail: Guardrail, base: float, traffic: Traffic, arms: Arms
) -> tuple[Model, float]:
    """The metric's model and the largest relative regression it can have."""
    deff = traffic.effect_of(guardrail)
    metric = guardrail.metric
    if metric in QUANTILES:
        return quantile_model(QUANTILES[metric], traffic, arms, deff), MAX_LATENCY_FACTOR
    if metric == "conversion_rate":
        return proportion_model(base, arms, -1.0, deff), 1.0
    if metric == "conversion_value":
        return value_model(traffic, arms, deff), 1.0
    failing = failing_of(traffic, deff) if metric == "error_rate" else None
    return proportion_model(base, arms, 1.0, deff, failing), (1.0 - base) / base


def noise_model(guardrail: Guardrail, base: float, traffic: Traffic, arms: Arms) -> Model | None:
    """V of Δ̂ alone on a content of the arms whose treatment's failing units are given
    (:func:`proportion_model`'s ``noise``); None where it is the gate's V."""
    if guardrail.metric != "error_rate" or arms.failing is None:
        return None
    deff = traffic.effect_of(guardrail)
    failing = failing_of(traffic, deff)
    return proportion_model(base, arms, 1.0, deff, failing, noise=True)


# --- what the gate needs before it tests ---------------------------------------------------


def units_behind(guardrail: Guardrail, traffic: Traffic, arms: Arms) -> float:
    """N of the gate's boundary: each arm's units, at most its events of the metric (a unit
    with no conversion adds nothing to a conversion's value), as the gate counts them; the
    requests where the source has no units."""
    if guardrail.source != "events":
        return sum(arms.requests)
    events = events_of(guardrail.metric, traffic, arms)
    return sum(min(u, e) for u, e in zip(arms.units, events, strict=True))


def short_of_floor(guardrail: Guardrail, arms: Arms, plan: Plan, traffic: Traffic) -> str:
    """Why the smaller arm is not tested by the stage's end, or ''."""
    metric = guardrail.metric
    floor = float(plan.min_metric_events)
    if metric in QUANTILES:
        q = QUANTILES[metric]
        floor = max(floor, quantile_min_samples(q) * traffic.effect_of(guardrail))
    events = min(events_of(metric, traffic, arms))
    if events < floor:
        return f"not tested: {events:,.0f} events in the smaller arm, the gate needs {floor:,.0f}"
    if guardrail.source == "events" and min(arms.units) < MIN_CLUSTERS:
        return f"not tested: fewer than {MIN_CLUSTERS} units in the smaller arm"
    return ""
