"""The smallest regression a stage can catch: the gate's own boundary, read backwards.

Pure; standard library only. A stage serves ``percent`` of the traffic to treatment and
the rest to control for ``min_duration`` (longer when its smaller arm needs longer to reach
``min_units_per_arm``). Given the expected traffic (:class:`~.regressing.Traffic`), the preview of a
guardrail is the smallest regression Δ the gate's test detects with probability
:data:`POWER` by the end of that minimum::

    Δ = δ + h(N, V(Δ)) + z_0.8 · √V(Δ)

with h the boundary of :mod:`controller.core.stats.sequential` at the plan's level per
test and ``n_tune`` (with a final look, the smaller of the boundary at its share of the
level and the fixed-horizon test's z·√V at the rest: either shows harm at the stage's end,
on the same Δ̂ and V̂; :func:`last_look_width`), δ the guardrail's tolerance, N the units
behind the metric and V the variance of the difference on units: the variance as if
requests were independent, at the regressed rate and with the gate's floors, times the
design effect (a latency quantile widens its ranks by it instead, as
:mod:`controller.core.stats.on_units` does).

**The approximation.** At the stage's end Δ̂ is taken as normal around Δ with variance V:
the test then regresses (Δ̂ - h > δ) with probability Φ((Δ - δ - h)/√V), which is 0.8 at
the Δ above, were the gate's V̂ equal to V. The gate reads V̂ from its buckets of units,
which scatter it, so the chance is averaged over V̂'s spread (:func:`_chance_of`), and the
figure is a little larger than the formula's. Only that last look is counted. The gate
looks all along and a crossing before the end counts too, so the gate catches Δ somewhat
more often than 80% (``bench/power.py`` measures it). Units are taken to arrive at
``requests_per_s / requests_per_unit`` a second, each new: units who return make the
count grow more slowly, and the preview optimistic there.

**Units unlike the rest.** Where the traffic names heavy units (a share sending many
requests each) or failing units (a share failing many of theirs), the stage's smaller arm
may hold few of them, and the gate's power is that of the content it happens to hold:
the chance above is averaged over the contents of :mod:`controller.core.stats.arm_contents`
(each with h at the gate's V̂ on that content and √V the noise left once the content is
fixed), and Δ is the smallest whose average chance is 0.8. A regression raises failing
units' propensities until they saturate at 1 (:mod:`controller.core.stats.regressing`).

A running stage is previewed from its own test instead (:mod:`.running_power`), and a new
failure on its exact count (:mod:`.failures.preview`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from controller.core.rollouts import Guardrail, Plan
from controller.core.stats.arm_contents import arm_contents, estimate_degrees
from controller.core.stats.failures.preview import rate_text, smallest_new_failure
from controller.core.stats.failures.testing import NEW_FAILURES
from controller.core.stats.regressing import (
    Arms,
    Failing,
    Model,
    Traffic,
    arms_at,
    base_of,
    failing_of,
    metric_model,
    noise_model,
    short_of_floor,
    stage_seconds,
    tolerance_of,
    units_behind,
)
from controller.core.stats.sequential import (
    Direction,
    sequential_half_width,
    sequential_rho,
)

POWER = 0.8
"""The chance of detection the preview is for."""
_NORMAL = NormalDist()
Z_POWER = _NORMAL.inv_cdf(POWER)
"""z of :data:`POWER`, 0.8416."""
MAX_SECONDS = 30 * 86_400.0
"""Past 30 days a stage is taken never to detect the effect asked about."""
FEW_UNITS = 100
"""Fewer units than this in the smaller arm: how many requests it gets depends on which few
units land in it, and where a few units send most requests and the traffic does not say so
(:attr:`~.regressing.Traffic.heavy_share`) the gate catches the figure less often than 80%
(``bench/power.py``)."""
NOT_PREVIEWED = {
    "crash_count": "not previewed: a count per exposure needs its base rate and how it"
    " clusters by unit",
    "exception_count": "not previewed: a count per exposure needs its base rate and how it"
    " clusters by unit",
}
"""Metrics the preview has no model of, and why it shows no figure for them."""
STEPS = 80
"""Bisection steps: far below any figure shown."""
COARSE = 0.5
"""A figure is shown only where a regression of half its size is detected less often than
this: past it the stage's chance hardly grows with the regression's size (a quantile read
from a small arm's few slowest requests, or a test taken only when a heavy unit lands in
the arm), and a figure would promise what half of it mostly gets too."""


@dataclass(frozen=True, slots=True)
class Detectable:
    """The smallest regression of one guardrail a stage detects with 80% power."""

    guardrail: str
    direction: Direction
    effect: float | None
    """Its size relative to the base (3.1: +310%, or -310% where higher is better); None
    when the stage detects none (``reason`` says why)."""
    delta: float | None
    """Its size in the metric's unit (a rate's share, ms)."""
    base: float | None
    """The base value it is relative to: the control's rate, or its quantile in ms."""
    reason: str = ""
    previewed: bool = True
    """False for a metric the preview has no model of (the conversion value)."""
    new: bool = False
    """A failure new in treatment: ``effect`` and ``delta`` are its share of treatment's
    requests, ``base`` 0 (:mod:`controller.core.stats.failures.preview`)."""

    def text(self) -> str:
        """``+310%``, ``-40%``, ``0.47% of treatment's requests``, or why there is no figure."""
        if self.effect is None:
            return self.reason or "nothing detectable"
        if self.new:
            return f"{rate_text(self.effect)} of treatment's requests"
        sign = "+" if self.direction == "lower_is_better" else "-"
        return sign + share_text(self.effect)


@dataclass(frozen=True, slots=True)
class StagePreview:
    """What one compared stage of a plan can catch, at the end of its minimum."""

    index: int
    percent: float
    seconds: float
    """The stage's minimum: its min_duration, or longer for its min_units_per_arm."""
    by_units: bool
    """The minimum is set by min_units_per_arm rather than min_duration."""
    guardrails: tuple[Detectable, ...]
    smaller_arm_units: float = math.inf
    """Units expected in the smaller arm by then: below :data:`FEW_UNITS` the figure is
    optimistic where a few units send most requests (``bench/power.py``), unless the
    traffic says which (``heavy_mixed``)."""
    heavy_mixed: bool = False
    """The traffic has heavy units, and the figures are averaged over how many of them land
    in the smaller arm."""

    def worst(self) -> Detectable | None:
        """The guardrail with the largest relative figure (one that detects nothing first);
        None when no guardrail is previewed. A new failure's figure is a rate, not relative."""
        shown = [d for d in self.guardrails if d.previewed and not (d.new and d.effect is not None)]
        return max(shown, key=_size) if shown else None


def _size(found: Detectable) -> float:
    return math.inf if found.effect is None else found.effect


def share_text(share: float) -> str:
    """A relative size in percent: ``310%``, ``12%``, ``0.5%`` (two digits below 1%)."""
    if share < 0.01:
        return f"{share * 100:.2g}%"
    return f"{share * 100:,.0f}%"


# --- the preview ------------------------------------------------------------------------


def detectable(
    guardrail: Guardrail, percent: float, seconds: float, traffic: Traffic, plan: Plan
) -> Detectable:
    """The smallest regression of ``guardrail`` detected with 80% power after ``seconds``
    of a stage serving ``percent`` (see the module for the approximation)."""
    direction: Direction = "lower_is_better" if guardrail.lower_is_better else "higher_is_better"
    none = Detectable(guardrail.key, direction, None, None, None)
    if guardrail.metric == NEW_FAILURES:
        rate, why = smallest_new_failure(guardrail, percent, seconds, traffic, plan, power=POWER)
        return Detectable(guardrail.key, direction, rate, rate, 0.0, why, new=True)
    unmodelled = NOT_PREVIEWED.get(guardrail.metric)
    if unmodelled is not None:
        return Detectable(guardrail.key, direction, None, None, None, unmodelled, previewed=False)
    if not 0 < percent < 100:
        return _with(none, "no control arm to compare against")
    arms = arms_at(percent, traffic, seconds)
    base = base_of(guardrail, traffic)
    short = short_of_floor(guardrail, arms, plan, traffic) or ("its base is 0" if base <= 0 else "")
    if short:
        return Detectable(guardrail.key, direction, None, None, base, short)
    n = units_behind(guardrail, traffic, arms)
    level = _level(guardrail, plan)
    powers = [
        (weight, _power_of(guardrail, base, traffic, content, plan))
        for weight, content in arm_contents(percent, traffic, arms, _failing(guardrail, traffic))
    ]
    model, largest = metric_model(guardrail, base, traffic, arms)
    at = (tolerance_of(guardrail, base), round(n), level)
    x = _smallest(powers, *at, largest)
    why = _why_none(powers) if x is None else _coarse(powers, x, direction, at)
    if x is None or why:
        return Detectable(guardrail.key, direction, None, None, base, why)
    return Detectable(guardrail.key, direction, x, model(x)[0], base)


def _coarse(
    powers: Sequence[tuple[float, _Models | None]],
    x: float,
    direction: Direction,
    at: tuple[float, int, _Level],
) -> str:
    """Why the figure x is not shown (a regression half its size is caught about as often,
    :data:`COARSE`), or ''."""
    half = _chance(powers, x / 2.0, *at)
    if half < COARSE:
        return ""
    sign = "+" if direction == "lower_is_better" else "-"
    return (
        f"no figure: a regression half the size of {sign}{share_text(x)} is caught about as"
        f" often ({half:.0%}), so the stage cannot tell how large one is; lengthen it or raise"
        " its percent"
    )


def _why_none(powers: Sequence[tuple[float, _Models | None]]) -> str:
    tested = math.fsum(weight for weight, model in powers if model is not None)
    if tested >= POWER:
        return "detects no regression"
    return (
        f"detects no regression with {POWER:.0%} power: the smaller arm reaches the gate's"
        f" floor of events, on average, only when a heavy unit lands in it ({tested:.0%} of"
        " stages)"
    )


def _failing(guardrail: Guardrail, traffic: Traffic) -> Failing | None:
    if guardrail.metric != "error_rate":
        return None
    return failing_of(traffic, traffic.effect_of(guardrail))


def _with(found: Detectable, reason: str) -> Detectable:
    return Detectable(found.guardrail, found.direction, None, None, found.base, reason)


@dataclass(frozen=True, slots=True)
class _Models:
    """A content's model of Δ and the gate's V, of the noise of Δ̂ where that differs, and
    how well the gate estimates V: its design effect d and its degrees of freedom."""

    model: Model
    noise: Model | None
    deff: float = 1.0
    degrees: float = math.inf


def _power_of(
    guardrail: Guardrail, base: float, traffic: Traffic, arms: Arms, plan: Plan
) -> _Models | None:
    """The metric's models on one content of the arms; None when the gate would not test it."""
    if short_of_floor(guardrail, arms, plan, traffic):
        return None
    model = metric_model(guardrail, base, traffic, arms)[0]
    noise = noise_model(guardrail, base, traffic, arms)
    if guardrail.source != "events":
        return _Models(model, noise)
    deff = traffic.effect_of(guardrail)
    return _Models(model, noise, deff, estimate_degrees(traffic, arms, deff))


@dataclass(frozen=True, slots=True)
class _Level:
    """The level the gate tests a guardrail at, and the sample size its bound is tuned for;
    with a final look, the z its fixed-horizon test must reach."""

    alpha: float
    n_tune: int
    final_z: float | None = None


def _level(guardrail: Guardrail, plan: Plan) -> _Level:
    """The gate's levels for ``guardrail`` in a compared stage, weights and all: with a final
    look, the always-valid boundary's share and the look's z."""
    if guardrail.source != "events" or guardrail.dry_run or plan.final_look_share <= 0:
        return _Level(plan.alpha_for(guardrail.key), plan.n_tune)
    final_z = _NORMAL.inv_cdf(1.0 - plan.final_alpha(guardrail.key))
    return _Level(plan.sequential_alpha(guardrail.key), plan.n_tune, final_z)


def last_look_width(variance: float, n: int, level: _Level) -> float:
    """What Δ must exceed its tolerance by at the stage's last look: the always-valid
    boundary's half-width, or at a final look the fixed-horizon test's z·√V where smaller
    (either test shows the harm, on the same Δ and V)."""
    rho = sequential_rho(level.alpha, level.n_tune)
    h = sequential_half_width(variance=variance, n=n, alpha=level.alpha, rho=rho)
    if level.final_z is None:
        return h
    return min(h, level.final_z * math.sqrt(variance))


def _chance_of(models: _Models, x: float, tolerance: float, n: int, level: _Level) -> float:
    """The chance the last look regresses at a regression of size x: Φ((Δ - δ - w)/√V) with
    w the gate's width at its V̂ and V that of Δ̂; 0 where V is not finite.

    The gate estimates V from the buckets of units, as V_indep·max(1, d̂), d̂ about d times a
    χ² divided by its degrees of freedom, those of this content of the arms
    (:func:`~.arm_contents.estimate_degrees`); w grows as √V̂, so the chance is averaged
    over :data:`_SPREAD` equally likely d̂. With many degrees this is the chance at V̂ = V;
    with few the gate's width scatters, and more often up than down."""
    delta, variance = models.model(x)
    spread = variance if models.noise is None else models.noise(x)[1]
    if not (math.isfinite(variance) and variance > 0.0 and spread > 0.0):
        return 0.0
    width, noise = last_look_width(variance, n, level), math.sqrt(spread)
    if not math.isfinite(models.degrees):
        return _NORMAL.cdf(max(-40.0, (delta - tolerance - width) / noise))
    d = models.deff
    return math.fsum(
        _NORMAL.cdf(
            max(-40.0, (delta - tolerance - width * math.sqrt(max(1.0, d * g) / d)) / noise)
        )
        for g in _spread(models.degrees)
    ) / len(_SPREAD)


_SPREAD = tuple(_NORMAL.inv_cdf((i + 0.5) / 9) for i in range(9))
"""z of nine equally likely draws of the gate's estimate of the design effect."""


def _spread(degrees: float) -> list[float]:
    """A χ² over its ``degrees`` at the draws of :data:`_SPREAD` (Wilson and Hilferty's cube of
    a normal, 1931)."""
    step = 2.0 / (9.0 * degrees)
    return [max(0.0, 1.0 - step + z * math.sqrt(step)) ** 3 for z in _SPREAD]


def _chance(
    powers: Sequence[tuple[float, _Models | None]],
    x: float,
    tolerance: float,
    n: int,
    level: _Level,
) -> float:
    """The chance a regression of size x is detected at N = ``n``: on each content of the
    arms with its weight, summed (a content the gate would not test adds nothing)."""
    return math.fsum(
        weight * _chance_of(models, x, tolerance, n, level)
        for weight, models in powers
        if models is not None
    )


def _detected(
    powers: Sequence[tuple[float, _Models | None]],
    x: float,
    tolerance: float,
    n: int,
    level: _Level,
) -> bool:
    """Whether a regression of size x is detected with 80% power at N = ``n``."""
    return _chance(powers, x, tolerance, n, level) >= POWER


def _smallest(
    powers: Sequence[tuple[float, _Models | None]],
    tolerance: float,
    n: int,
    level: _Level,
    largest: float,
) -> float | None:
    """The smallest x in (0, largest] detected with 80% power, by bisection; None if none."""
    if n <= 0 or not _detected(powers, largest, tolerance, n, level):
        return None
    low, high = 0.0, largest
    for _ in range(STEPS):
        middle = (low + high) / 2.0
        if _detected(powers, middle, tolerance, n, level):
            high = middle
        else:
            low = middle
    return high


def stage_preview(plan: Plan, index: int, traffic: Traffic) -> StagePreview:
    """Every guardrail's smallest detectable regression at the end of stage ``index``'s
    minimum."""
    stage = plan.stages[index]
    seconds, by_units = stage_seconds(stage, traffic)
    found = tuple(detectable(g, stage.percent, seconds, traffic, plan) for g in plan.guardrails)
    units = min(arms_at(stage.percent, traffic, seconds).units)
    mixed = traffic.heavy_share > 0.0
    return StagePreview(index, stage.percent, seconds, by_units, found, units, mixed)


def plan_preview(plan: Plan, traffic: Traffic) -> list[StagePreview]:
    """:func:`stage_preview` of each stage with a control arm (below 100%)."""
    return [stage_preview(plan, i, traffic) for i, s in enumerate(plan.stages) if s.percent < 100]
