"""A holdout and everyone else on the traffic real services send, look by look.

One flag's units are drawn as :mod:`tests.support.clustered` draws a stage's (heavy units,
failing ones, bots, slow ones), with ``100 - percent`` of them in everyone else (the
released: ``rest_factor`` scales their error propensity) and the rest held out. The
groups' aggregates have the store's shape, unit buckets included, as the store's read of
the cells would give them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from controller.core.stats.aggregates import ArmAggregate
from tests.support.clustered import SHAPES, Shape, _Arm, _population, look_counts


def holdout_looks(
    shape: Shape,
    rng: np.random.Generator,
    *,
    units: int,
    percent: float,
    rest_factor: float = 1.0,
    growth: float = 0.25,
) -> Iterator[tuple[ArmAggregate, ArmAggregate]]:
    """(everyone else, the holdout) as the requests arrive, ``growth`` apart."""
    r = _population(rng, shape, units, 100.0 - percent, rest_factor)
    groups = (_Arm(units, np.zeros(units, bool)), _Arm(units, np.zeros(units, bool)))
    last = 0
    for count in look_counts(r.arm.size, first=2000, growth=growth):
        rows = np.arange(last, count)
        for g, group in enumerate(groups):
            group.add(r, rows[r.arm[rows] == g])
        last = count
        yield groups[0].aggregate(), groups[1].aggregate()


def last_look(
    seed: int,
    *,
    percent: float,
    rest_factor: float = 1.0,
    shape: str = "no_heavy_failing",
    units: int = 40_000,
) -> tuple[ArmAggregate, ArmAggregate]:
    """Both groups of one flag once every request arrived."""
    rng = np.random.default_rng(seed)
    *_, final = holdout_looks(
        SHAPES[shape], rng, units=units, percent=percent, rest_factor=rest_factor
    )
    return final
