"""One unit that decides a metric per exposure: the guardrail held, the unit named.

Pure. The conversion rate and the crash and exception counts are ratios over an arm's
exposures, the conversion value a ratio over its valued conversions; each is tested with
its variance on units, the buckets of units its clusters (:mod:`controller.core.stats.units`).
What makes such a test's z rest on one cluster is that cluster's *leverage*, its share h of
the ratio's denominator, not its share of the numerator (MacKinnon and Webb, *Wild bootstrap
inference for wildly different cluster sizes*, Journal of Applied Econometrics 32(2), 2017).
The arm's rate R weighs the cluster by h, so its residual Y_b - R·N_b is taken against the
rest of the arm, (1 - h)·(Y_b - R_rest·N_b), and the jackknife's variance, over (1 - h)
(docs/architecture.md, *Unequal buckets*), compares the cluster with R_rest alone. Where h
is over half, R_rest comes from less than half of the arm's events, often from a few
dozen units (a 1% arm holding one unit that sends most of its exposures): the variance
then rests on one draw of the cluster's difference from a noisy R_rest, the z's
distribution has the tails of a t with one degree of freedom, and identical arms were
rolled back (the conversion rate of ``bench/aa.py``'s ``one_unit`` shape).
A cluster holding most of the numerator but little of the denominator (a device in a crash
loop, with one exposure and hundreds of crashes) is not held: R_rest is then the arm's rate,
well estimated, the cluster's residual is its own, and it fills both the difference and its
variance, so z stays near 1 whichever arm holds it; holding would only keep a stage whose
few crashes came from one unit from moving on.

The store counts a unit's exposures only in its bucket, so the share held against
:data:`~.deciding.DECIDING_SHARE` is the bucket's. A bucket's share is at least that of any
unit hashed to it, so every unit over the share is held; and a bucket that heavy is, in
practice, one unit (buckets hash units independently of the arms), or at most a very few,
whose cluster the test could not weigh either. It is named by the heaviest unit listed
there (:func:`~.deciding.in_bucket`: the lists rank units by requests, which per-request
exposures follow); a bucket listing none is named as a bucket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.stats.heaviest.caps import Arm
from controller.core.stats.heaviest.deciding import DECIDING_SHARE, UnitShare, in_bucket, shown
from controller.core.stats.units import EXPOSURES, METRIC_DENOMINATORS, VALUES

PER_EXPOSURE = frozenset({"conversion_rate", "conversion_value", "crash_count", "exception_count"})
"""The guardrails per exposure (the conversion value per valued conversion)."""
NAMES = {EXPOSURES: "exposures", VALUES: "valued conversions"}
"""What people call each denominator."""


@dataclass(frozen=True, slots=True)
class BucketShare:
    """The bucket of units holding the largest share of an arm's denominator of a metric,
    and the heaviest unit listed in it, where one is."""

    arm: Arm
    bucket: int
    share: float
    events: str
    """What the share is of: ``exposures``, ``valued conversions``."""
    unit: UnitShare | None = None


def heaviest_bucket(metric: str, data: FlagAggregates) -> BucketShare | None:
    """The bucket of units holding more than :data:`~.deciding.DECIDING_SHARE` of an arm's
    denominator of ``metric`` (the larger where both arms have one); None where none does,
    the metric is not one per exposure, or the arms have no buckets."""
    if metric not in PER_EXPOSURE:
        return None
    kind = METRIC_DENOMINATORS[metric]
    found: BucketShare | None = None
    arms: tuple[tuple[Arm, ArmAggregate], ...] = (
        ("treatment", data.treatment),
        ("control", data.control),
    )
    for name, arm in arms:
        if arm.buckets is None:
            continue
        column = arm.buckets.column(kind)
        total = math.fsum(column)
        if total <= 0:
            continue
        bucket = max(range(len(column)), key=column.__getitem__)
        share = column[bucket] / total
        if share > DECIDING_SHARE and (found is None or share > found.share):
            found = BucketShare(name, bucket, share, NAMES[kind])
    if found is None:
        return None
    return BucketShare(
        found.arm, found.bucket, found.share, found.events, in_bucket(data, found.arm, found.bucket)
    )


def bucket_text(found: BucketShare, *, hashed: bool = False) -> str:
    """Why a guardrail per exposure is not tested while ``found`` decides it."""
    said = f"one bucket of units holds {found.share:.0%} of {found.arm}'s {found.events}"
    unit = found.unit
    who = (
        "most likely one unit (a bot, a broken account) decides it"
        if unit is None
        else f"unit {shown(unit.unit, hashed=hashed)}, sending {unit.requests_share:.0%} of"
        f" {found.arm}'s requests, is in it and most likely decides it"
    )
    return f"{said}: {who}, so it is not tested while that share is over {DECIDING_SHARE:.0%}"
