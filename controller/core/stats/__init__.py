"""The statistics: aggregates, sequential tests, SRM, latency, guardrails, limits, rates.

Folding events into aggregates is here too; nothing here knows a rollout's phase.
"""

from controller.core.stats.aggregates import (
    BOTH_FIELD,
    FLOAT_FIELDS,
    MAX_CONVERSION_NAMES,
    OTHER_CONVERSIONS,
    WATCH_CAP,
    WATCH_DRAW,
    WATCH_ONE_IN_BITS,
    WATCH_SEED,
    WATCHED_FIELD,
    ArmAggregate,
    CellDelta,
    Conversions,
    FlagAggregates,
    NamedDelta,
    watched_members,
)
from controller.core.stats.dominance import Dominance, dominance, dominance_text
from controller.core.stats.failures.counts import REQUEST_MARK as REQUEST_FAILURE_MARK
from controller.core.stats.failures.counts import FailureCounts, failures_of, merged_failures
from controller.core.stats.failures.testing import NEW_FAILURES, FailureTest, failure_tests
from controller.core.stats.failures.testing import OTHER as OTHER_FAILURES
from controller.core.stats.failures.testing import TESTS as FAILURE_TESTS
from controller.core.stats.folding import FOLD_LAYOUT, PartitionDelta, Seen, fold
from controller.core.stats.guardrails import (
    FixedHorizonResult,
    control_baseline,
    fixed_horizon_test,
    guardrail_result,
    metric_floor,
    units_waiting,
)
from controller.core.stats.heaviest.caps import CAP_MULTIPLE, CappedUnit, Capping, capped
from controller.core.stats.heaviest.counts import (
    HEAVIEST_KEPT,
    Heaviest,
    UnitCount,
    merged,
    merged_lists,
    partition_list,
)
from controller.core.stats.heaviest.deciding import DECIDING_SHARE, UnitShare, in_bucket, shown
from controller.core.stats.heaviest.weighing import Weighed, weighed
from controller.core.stats.latency import (
    ARM_QUANTILE_DECIMALS,
    ARM_QUANTILES,
    arm_latency,
    latency_evidence,
)
from controller.core.stats.limits import (
    NO_CONTROL,
    QUANTILE_SHARES,
    LimitFigure,
    LimitStagePreview,
    detectable_rate,
    limit_parts,
    limit_preview,
    limit_tests,
    proof_trials,
    shown_under,
    unproven,
    without_control,
)
from controller.core.stats.on_units import metric_events
from controller.core.stats.power import (
    FEW_UNITS,
    POWER,
    StagePreview,
    plan_preview,
    share_text,
)
from controller.core.stats.regressing import Traffic
from controller.core.stats.running_power import (
    Observed,
    observed_detectable,
    observed_seconds_to_detect,
)
from controller.core.stats.sequential import SequentialResult
from controller.core.stats.sourced import (
    MAX_SHOWN_QUERY,
    Shown,
    counted_arm,
    histogram_arm,
    limit_result,
    shown_reading,
)
from controller.core.stats.srm import SrmResult, srm_test
from controller.core.stats.units import (
    KIND_COUNT,
    KINDS,
    SLOT_FIELDS,
    SUM_KINDS,
    UNIT_BUCKETS,
    UnitBuckets,
)

__all__ = [
    "ARM_QUANTILES",
    "ARM_QUANTILE_DECIMALS",
    "BOTH_FIELD",
    "CAP_MULTIPLE",
    "DECIDING_SHARE",
    "FAILURE_TESTS",
    "FEW_UNITS",
    "FLOAT_FIELDS",
    "FOLD_LAYOUT",
    "HEAVIEST_KEPT",
    "KINDS",
    "KIND_COUNT",
    "MAX_CONVERSION_NAMES",
    "MAX_SHOWN_QUERY",
    "NEW_FAILURES",
    "NO_CONTROL",
    "OTHER_CONVERSIONS",
    "OTHER_FAILURES",
    "POWER",
    "QUANTILE_SHARES",
    "REQUEST_FAILURE_MARK",
    "SLOT_FIELDS",
    "SUM_KINDS",
    "UNIT_BUCKETS",
    "WATCHED_FIELD",
    "WATCH_CAP",
    "WATCH_DRAW",
    "WATCH_ONE_IN_BITS",
    "WATCH_SEED",
    "ArmAggregate",
    "CappedUnit",
    "Capping",
    "CellDelta",
    "Conversions",
    "Dominance",
    "FailureCounts",
    "FailureTest",
    "FixedHorizonResult",
    "FlagAggregates",
    "Heaviest",
    "LimitFigure",
    "LimitStagePreview",
    "NamedDelta",
    "Observed",
    "PartitionDelta",
    "Seen",
    "SequentialResult",
    "Shown",
    "SrmResult",
    "StagePreview",
    "Traffic",
    "UnitBuckets",
    "UnitCount",
    "UnitShare",
    "Weighed",
    "arm_latency",
    "capped",
    "control_baseline",
    "counted_arm",
    "detectable_rate",
    "dominance",
    "dominance_text",
    "failure_tests",
    "failures_of",
    "fixed_horizon_test",
    "fold",
    "guardrail_result",
    "histogram_arm",
    "in_bucket",
    "latency_evidence",
    "limit_parts",
    "limit_preview",
    "limit_result",
    "limit_tests",
    "merged",
    "merged_failures",
    "merged_lists",
    "metric_events",
    "metric_floor",
    "observed_detectable",
    "observed_seconds_to_detect",
    "partition_list",
    "plan_preview",
    "proof_trials",
    "share_text",
    "shown",
    "shown_reading",
    "shown_under",
    "srm_test",
    "units_waiting",
    "unproven",
    "watched_members",
    "weighed",
    "without_control",
]
