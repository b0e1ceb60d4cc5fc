"""What the clustered streams could show at best: the error-rate test on each unit's own counts.

The gate estimates a ratio's variance on units from 64 buckets of units per arm
(:mod:`controller.core.stats.on_units`). Here the same stage populations
(:func:`tests.support.clustered._population`, drawn from the same seed, so the streams are
paired run by run) are tested on every unit's exact request and error counts: the delta
method's per-unit variance of errors per request (Deng, Knoblich and Lu 2018), which
buckets can only estimate. Two oracles:

* **sequential**: the gate's own always-valid boundary (the plan's level and ``n_tune``) at
  every look the gate takes; what the gate would catch with no loss from the buckets;
* **fixed**: one look per stage, when its last request has arrived, a one-sided z-test at
  the plan's level per test. Valid only for that one look, so not a gate: it is the most a
  test that waits for the stage's end could see, and the gap to it is the price of being
  free to stop at any look.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from controller.core.rollouts.plan import Plan
from controller.core.stats.sequential import sequential_half_width, sequential_rho
from tests.support.clustered import Shape, _population, look_counts


def _difference(
    requests: np.ndarray, errors: np.ndarray, arm: np.ndarray
) -> tuple[float, float, int] | None:
    """Treatment's errors per request minus control's, its delta-method variance on units,
    and the units behind it; None while an arm has fewer than two units with requests."""
    out: list[tuple[float, float, int]] = []
    for a in (0, 1):
        chosen = (arm == a) & (requests > 0)
        y, x = errors[chosen], requests[chosen]
        n = int(chosen.sum())
        if n < 2:
            return None
        ratio = float(y.sum() / x.sum())
        out.append((ratio, float(np.var(y - ratio * x, ddof=1) / (n * x.mean() ** 2)), n))
    (r_t, v_t, n_t), (r_c, v_c, n_c) = out
    return r_t - r_c, v_t + v_c, n_t + n_c


def oracle_caught(
    plan: Plan, shape: Shape, *, seed: int, treatment_factor: float, growth: float
) -> dict[str, int | None]:
    """The stage (index) at which each oracle first sees treatment's error rate above
    control's, or None: ``sequential`` and ``fixed`` (see the module)."""
    rng = np.random.default_rng(seed)
    alpha = plan.alpha_for(plan.guardrails[0].key)
    rho = sequential_rho(alpha, plan.n_tune)
    z = NormalDist().inv_cdf(1.0 - alpha)
    caught: dict[str, int | None] = {"sequential": None, "fixed": None}
    for index, stage in enumerate(plan.stages):
        if stage.percent >= 100:
            break
        units = max(1000, round(shape.units * stage.min_duration.total_seconds() / 1800))
        r = _population(rng, shape, units, stage.percent, treatment_factor)
        arm = np.zeros(units, dtype=np.int64)
        arm[r.unit] = r.arm
        looks = look_counts(r.arm.size, growth=growth)
        for count in looks if caught["sequential"] is None else looks[-1:]:
            seen = r.unit[:count]
            requests = np.bincount(seen, minlength=units)
            errors = np.bincount(seen, weights=r.error[:count].astype(float), minlength=units)
            found = _difference(requests, errors, arm)
            if found is None:
                continue
            delta, variance, n = found
            width = sequential_half_width(variance=variance, n=n, alpha=alpha, rho=rho)
            if caught["sequential"] is None and delta > width:
                caught["sequential"] = index
            last = count == looks[-1]
            if last and caught["fixed"] is None and delta > z * math.sqrt(variance):
                caught["fixed"] = index
        if all(stage is not None for stage in caught.values()):
            break
    return caught
