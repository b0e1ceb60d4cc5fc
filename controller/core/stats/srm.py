"""Sample-ratio mismatch: are units split between the arms as the stage says?

Pure functions of counts; no I/O and nothing beyond the standard library.
The decision is taken on an anytime-valid Bayes factor (see :func:`srm_test`);
for reference the evidence also keeps the chi-square goodness of fit of units
per arm against the stage's split, one degree of freedom,
p = erfc(√(χ²/2)) (exact for df = 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from controller.core.common import evidence_of
from controller.core.wire import JsonObject

SRM_PRIOR_CONCENTRATIONS = (100.0, 1_000.0, 10_000.0)
"""Beta prior concentrations of the mixture: 100 reacts to gross mismatches within a few
hundred units, 10,000 to a fraction of a percentage point within about 100,000."""
_MAX_EXPONENT = 700.0
"""Beyond this e^x overflows a float (near 709): the factor is then as good as infinite."""


@dataclass(frozen=True, slots=True)
class SrmResult:
    """The outcome of a sample-ratio-mismatch check on units per arm."""

    observed_treatment: int
    observed_control: int
    expected_treatment_share: float
    expected_control_share: float
    expected_treatment: float
    expected_control: float
    chi2: float
    p_value: float
    """The chi-square p-value of this one look (for reference; it ignores peeking)."""
    bayes_factor: float
    """Evidence for a mismatch against the split: a test martingale under it."""
    sequential_p_value: float
    """min(1, 1 / bayes_factor): valid however often the check is repeated."""
    p_threshold: float
    flagged: bool

    @property
    def missing(self) -> Literal["treatment", "control"] | None:
        """The arm flagged for holding no units at all where they were expected (None:
        neither, or nothing flagged)."""
        if not self.flagged:
            return None
        if self.observed_treatment == 0:
            return "treatment"
        return "control" if self.observed_control == 0 else None

    def evidence(self) -> JsonObject:
        """Every field, JSON-ready."""
        return {**evidence_of(self)}


def _chi_square(observed: Sequence[int], expected: Sequence[float]) -> float:
    # A 0% or 100% split has one arm by design: there is no ratio to check.
    if any(e <= 0.0 for e in expected):
        return 0.0
    return sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))


def srm_test(
    units_t: int,
    units_c: int,
    expected_treatment_share: float,
    *,
    p_threshold: float = 0.001,
    min_units_per_arm: int = 8,
) -> SrmResult:
    """Sample-ratio mismatch of units per arm against the split, valid under peeking.

    The gate repeats this check on every evaluation, so a fixed-sample test
    would flag healthy stages by chance: at p < 0.001, a chi-square checked
    every 10 units flags about 2% of healthy stages. The decision is instead
    taken on an anytime-valid p-value, ``1 / BF``, where ``BF`` is the Bayes
    factor of a Beta-binomial mixture against the expected split (the
    Dirichlet-multinomial test of Lindon and Malek, 2022, for two arms),
    averaged over three prior concentrations so that both gross mismatches
    in small samples and slight ones in large samples are caught. By Ville's
    inequality it exceeds ``1 / p_threshold`` at any look with probability at
    most ``p_threshold`` when the split is right. The chi-square statistic
    and its one-look p-value are kept in the evidence for reference.

    It flags once each arm holds ``min_units_per_arm`` units or was expected to: an arm
    that never arrives (a cohort whose events do not say so) holds none however long the
    check waits, yet none where 150 were expected is the strongest mismatch there is
    (:attr:`SrmResult.missing`). Where few were expected the Bayes factor alone says
    whether none is too unlikely to be chance (at 0.001: about 8 expected of an arm of
    0.1%, 12 of one of 2%, 25 of one of half).
    """
    if not 0.0 <= expected_treatment_share <= 1.0 or units_t < 0 or units_c < 0:
        raise ValueError("need a share in [0, 1] and non-negative unit counts")
    total = units_t + units_c
    share_c = 1.0 - expected_treatment_share
    expected = (total * expected_treatment_share, total * share_c)
    chi2 = _chi_square((units_t, units_c), expected)
    bayes_factor = srm_bayes_factor(units_t, units_c, expected_treatment_share)
    sequential_p = min(1.0, 1.0 / bayes_factor) if bayes_factor > 0 else 1.0
    return SrmResult(
        observed_treatment=units_t,
        observed_control=units_c,
        expected_treatment_share=expected_treatment_share,
        expected_control_share=share_c,
        expected_treatment=expected[0],
        expected_control=expected[1],
        chi2=chi2,
        p_value=math.erfc(math.sqrt(chi2 / 2.0)),
        bayes_factor=bayes_factor,
        sequential_p_value=sequential_p,
        p_threshold=p_threshold,
        flagged=sequential_p < p_threshold
        and _telling((units_t, units_c), expected, min_units_per_arm),
    )


def _telling(observed: tuple[int, int], expected: tuple[float, float], least: int) -> bool:
    """Whether the counts may be flagged: each arm holds ``least`` units or was expected to."""
    return all(o >= least or e >= least for o, e in zip(observed, expected, strict=True))


def srm_bayes_factor(units_t: int, units_c: int, share: float) -> float:
    """Mixture likelihood of the counts over a Beta prior centred on ``share``, over theirs.

    1.0 (no evidence) for a one-sided split, where there is nothing to test.
    Infinite when the evidence overflows a float.
    """
    if not 0.0 < share < 1.0:
        return 1.0
    null = units_t * math.log(share) + units_c * math.log1p(-share)
    factors = []
    for a, b, prior in _priors(share):
        log_mixture = _log_beta(a + units_t, b + units_c) - prior
        factors.append(math.exp(min(log_mixture - null, _MAX_EXPONENT)))
    return sum(factors) / len(factors)


@lru_cache(maxsize=64)
def _priors(share: float) -> tuple[tuple[float, float, float], ...]:
    """Per prior concentration, its Beta parameters around ``share`` and their log-beta:
    the same for every check of a split, so worked out once per split."""
    out = []
    for concentration in SRM_PRIOR_CONCENTRATIONS:
        a, b = concentration * share, concentration * (1.0 - share)
        out.append((a, b, _log_beta(a, b)))
    return tuple(out)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
