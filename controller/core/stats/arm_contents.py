"""What a small arm may hold: its power averaged over which units land in it.

A stage's smaller arm of k units holds a Poisson number of the units that are unlike the
rest, k times their share: heavy units (:attr:`~.regressing.Traffic.heavy_share`), whose
requests decide how many the arm gets, and failing units
(:attr:`~.regressing.Traffic.failing_share`), whose count in the treatment decides its rate
and its spread. Where that number is small the gate's power differs from its power at the
expected content, and :mod:`controller.core.stats.power` averages it over the contents
listed here instead (docs/architecture.md, *What a stage can catch*). Pure; standard
library only.
"""

from __future__ import annotations

import math
from dataclasses import replace

from controller.core.stats.regressing import Arms, Failing, Traffic

MIXED_UNITS = 400.0
"""Unlike units expected in the smaller arm up to which its content is mixed over their
count; past it their count varies by under 5% and the expected content is taken."""
_NEGLIGIBLE = 1e-9
"""A content less likely than this is left out."""


def arm_contents(
    percent: float, traffic: Traffic, arms: Arms, failing: Failing | None = None
) -> list[tuple[float, Arms]]:
    """The arms' possible contents with their chances (summing to 1): the smaller arm's
    count of heavy units, and the treatment's count of ``failing`` units where it is the
    smaller arm; the larger arm as expected. One content, the expected arms, where neither
    varies.

    Failing units are counted among the arm's effective units (Kish): k·E[m]²/E[m²] =
    k·m/(1 + weight), for the spread they carry grows with the square of their requests, and
    an arm of k units spreads as that many of equal size."""
    small = 0 if percent <= 50.0 else 1
    units = arms.units[small]
    contents = [(1.0, arms)]
    heavy = _poisson(units * traffic.heavy_share)
    if heavy:
        light, each = traffic.light_requests(), traffic.heavy_requests
        contents = [
            (chance, _with_requests(arms, small, max(0.0, units - j) * light + j * each))
            for chance, j in heavy
        ]
    if failing is None or small != 0:
        return contents
    effective = min(units, units * traffic.requests_per_unit / (1.0 + failing.weight))
    counts = _poisson(effective * failing.share)
    if counts:
        contents = [
            (chance * also, replace(content, failing=min(1.0, j / effective)))
            for chance, content in contents
            for also, j in counts
        ]
    return [(c, content) for c, content in contents if c > _NEGLIGIBLE]


def _with_requests(arms: Arms, arm: int, requests: float) -> Arms:
    both = list(arms.requests)
    both[arm] = requests
    return replace(arms, requests=(both[0], both[1]))


def _poisson(mean: float) -> list[tuple[float, int]]:
    """Poisson(mean) as (chance, count), normalised over the counts that matter; empty
    where the mean is 0 or past :data:`MIXED_UNITS`."""
    if not 0.0 < mean <= MIXED_UNITS:
        return []
    top = math.ceil(mean + 10.0 * math.sqrt(mean) + 10.0)
    log_mean = math.log(mean)
    chances = [math.exp(j * log_mean - mean - math.lgamma(j + 1)) for j in range(top + 1)]
    total = math.fsum(chances)
    return [(c / total, j) for j, c in enumerate(chances) if c / total > _NEGLIGIBLE]
