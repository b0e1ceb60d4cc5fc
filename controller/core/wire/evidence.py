"""A gate's evidence, typed: what the gate writes and every reader reads by its fields.

The gate builds :class:`GateEvidence` once, from its tests; health triggers
add the policy entry that chose their action, the machine publishes it with
its decision. Each part is a frozen model with a description, so the JSON
Schema of a decision says what its evidence holds.

The JSON is the one published since version 1, key for key: a part is
written only when it was given (:meth:`GateEvidence.wire` drops the parts a
gate did not fill, so a gate without a ring writes no ``audience``), numbers
keep their type (a count stays an integer), and an infinity is written as the
string ``"inf"`` / ``"-inf"`` (JSON has none) and read back as one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue

from controller.core.wire.json import Number
from controller.core.wire.ordered import Part

INSUFFICIENT = "insufficient data"
"""A guardrail's entry while either arm is below its event floor."""


class ArmTally(Part):
    """One arm's counts in the stage, as the gate saw them."""

    units: int = Field(description="Distinct units seen in the arm (HyperLogLog estimate).")
    exposures: int = Field(description="Exposure events counted.")
    requests: int = Field(description="Request events counted.")
    errors: int = Field(description="Requests that failed.")
    conversions: int = Field(description="Conversion events counted, every name together.")
    crashes: int = Field(
        default=0,
        description="Crashes counted (crash events, FATAL log records); absent when none.",
    )
    exceptions: int = Field(
        default=0,
        description="Exceptions counted (exception and crash events, exception span events,"
        " ERROR and FATAL log records); absent when none.",
    )
    named_conversions: dict[str, int] | None = Field(
        default=None,
        description="Conversions of each name the plan's guardrails read, and of the names "
        "past the store's cap under `_other`; absent when no guardrail names one.",
    )


class ArmLatency(Part):
    """One arm's own latency quantiles in ms; None while the arm had no latency event."""

    p50: Number | None = Field(description="Median latency in ms.")
    p95: Number | None = Field(description="95th percentile latency in ms.")
    p99: Number | None = Field(description="99th percentile latency in ms.")
    count: int = Field(description="Latency events counted.")


class GuardrailTest(Part):
    """One sequential comparison, treatment minus control (or a limit against its bound)."""

    delta: Number = Field(description="Observed difference, treatment minus control.")
    variance: Number = Field(description="Variance of the difference.")
    n: int = Field(description="Observations behind the test.")
    half_width: Number = Field(description="Half the confidence sequence's width.")
    lower: Number = Field(description="Lower bound of the confidence sequence.")
    upper: Number = Field(description="Upper bound of the confidence sequence.")
    regressed: bool = Field(description="The bound excludes harm within the tolerance.")
    direction: Literal["lower_is_better", "higher_is_better"] = Field(
        description="Which way the metric is better."
    )
    tolerance: Number = Field(description="The harm the plan tolerates.")
    alpha: Number = Field(description="The test's level (the plan's alpha, split).")
    n_tune: int = Field(description="The sample size the boundary is tuned for.")
    p_value: Number = Field(description="Always-valid p-value of no harm.")
    unit_of_analysis: Literal["unit", "request"] = Field(
        default="request",
        description="What `n` counts and the variance is over: `unit`, the unit of assignment "
        "(buckets of units); `request`, requests assumed independent (a Prometheus series).",
    )
    design_effect: Number | None = Field(
        default=None,
        description="The variance on units over the variance as if requests were independent "
        "(1: no correlation within units); absent when tested on requests.",
    )
    widening: Number | None = Field(
        default=None,
        description="The interval's half-width on units over its half-width as if requests "
        "were independent: how much wider heavy or failing units make it.",
    )
    dominant: DominantUnit | None = Field(
        default=None, description="A bucket of units carrying half its variance or more."
    )
    unit_cap: int | None = Field(
        default=None, description="Requests per unit per stage counted, in both arms alike."
    )
    capped: list[CappedUnit] | None = Field(
        default=None, description="Each unit whose requests were over the cap; absent: none."
    )


class DominantUnit(Part):
    """The bucket of units carrying most of a guardrail's variance on units in one arm: in
    practice one unit (a bot, a broken account) sending a large share of its events."""

    arm: Literal["treatment", "control"] = Field(description="The arm it is in.")
    events_share: Number = Field(description="Its share of the arm's events of the metric.")
    variance_share: Number = Field(description="Its share of the arm's variance on units.")
    unit: str | None = Field(default=None, description="The listed unit in the bucket, if any.")
    requests_share: Number | None = Field(default=None, description="Its share of requests.")
    errors_share: Number | None = Field(default=None, description="Its share of errors.")


class CappedUnit(Part):
    """A unit whose requests were over the cap: its own counts, before it."""

    arm: Literal["treatment", "control"] = Field(description="The arm it is in.")
    unit: str = Field(description="Its id (or its hash, where the plan asks for one).")
    requests: int = Field(description="Its requests; the cap's were counted.")
    errors: int = Field(description="Its errors; those in the cap's share were counted.")


class SrmCheck(Part):
    """The sample-ratio check: treatment's units against what the split expects."""

    observed_treatment: int = Field(description="Units seen in treatment.")
    observed_control: int = Field(description="Units seen in control.")
    expected_treatment_share: Number = Field(description="Treatment's share by the split.")
    expected_control_share: Number = Field(description="Control's share by the split.")
    expected_treatment: Number = Field(description="Treatment units the split expects.")
    expected_control: Number = Field(description="Control units the split expects.")
    chi2: Number = Field(description="Chi-square of this one look (for reference).")
    p_value: Number = Field(description="Its one-look p-value (ignores peeking).")
    bayes_factor: Number = Field(description="Evidence for a mismatch: a test martingale.")
    sequential_p_value: Number = Field(description="min(1, 1 / bayes_factor): always valid.")
    p_threshold: Number = Field(description="Below this sequential p-value it is flagged.")
    flagged: bool = Field(description="A mismatch was found.")


class FixedHorizonTest(Part):
    """One guardrail's test at its stage's final look: the one-sided z-test of the same
    difference, with the same variance on units, at the share of its level kept for it."""

    delta: Number = Field(description="Observed difference, treatment minus control.")
    variance: Number = Field(description="Variance of the difference (on units).")
    bound: Number = Field(description="The bound on the harmful side at the look's level.")
    z: Number = Field(description="Standard errors the difference lies beyond the tolerance.")
    p_value: Number = Field(description="One-sided p-value of no harm beyond the tolerance.")
    alpha: Number = Field(description="The look's level: the guardrail's, times the share.")
    tolerance: Number = Field(description="The harm the plan tolerates.")
    direction: Literal["lower_is_better", "higher_is_better"] = Field(
        description="Which way the metric is better."
    )
    regressed: bool = Field(description="The bound lies beyond the tolerance: harm shown.")


class FinalLook(Part):
    """The stage's final look (a sequential hybrid): one fixed-horizon test per gating
    guardrail when the stage would first move on, taken once per stage."""

    at: str = Field(description="When it was taken (ISO 8601, UTC).")
    share: Number = Field(description="The share of each guardrail's level spent on it.")
    tests: dict[str, FixedHorizonTest] | None = Field(
        default=None, description="Per gating guardrail its test; absent if taken earlier."
    )


class AlphaSpent(Part):
    """How the plan's alpha is spent: the rollout's, the split and each test's level."""

    rollout: Number = Field(description="The plan's alpha for the whole rollout.")
    guardrails: int = Field(description="Gating guardrails the alpha is split over.")
    stages: int = Field(description="Compared stages the alpha is split over.")
    per_test: Number = Field(description="Each test's level with equal weights (evenly).")
    weights: dict[str, Number] | None = Field(
        default=None, description="Per gating guardrail its share of the plan's alpha_weights."
    )
    final_look: Number | None = Field(
        default=None, description="The share of each test's level spent at its final look."
    )


class TierBurn(Part):
    """One tier of the plan's burn-rate condition as read (tiers are joined by OR)."""

    above: Number = Field(description="The burn rate that holds over every window of it.")
    windows: list[str] = Field(description="Its windows (`1h`, `5m`: long, then short).")
    burns: bool | None = Field(
        description="Above over every window of it; null: a window could not be read."
    )


class ErrorBudget(Part):
    """The plan's burn-rate condition as last read: while it holds, forward moves wait."""

    holds: bool = Field(
        description="Forward moves wait: the burn rate is above over every window of a"
        " tier, or a window's burn rate cannot be read (never taken as healthy)."
    )
    reason: str = Field(
        description="Why, in words; starts with `error_budget`, names the tier that burns"
        " and its burn rate over each window."
    )
    above: Number = Field(
        description="The burn rate that holds, from the plan; of several tiers, the"
        " threshold of the first that burns (else of the first)."
    )
    windows: dict[str, Number | None] = Field(
        description="Per window (`5m`, `1h`) the burn rate read; null: it could not be read."
    )
    problems: dict[str, str] | None = Field(
        default=None, description="Per window that could not be read, why."
    )
    tiers: list[TierBurn] | None = Field(
        default=None, description="Each tier of the plan in its order, as read."
    )


class BothArms(Part):
    """Watched units seen in both arms (a sample of the stage's units)."""

    units: int = Field(description="Watched units seen in both arms.")
    watched: int = Field(description="Units watched.")


class AudienceRing(Part):
    """A targeted rollout's ring at the gate: whom its comparison was drawn from."""

    rollout: str | None = Field(description="The rollout's audience as rule text; none: all.")
    stage: str = Field(description="The stage's ring as rule text; `everyone` when unnamed.")
    percent: Number = Field(description="The stage's percent of its ring.")
    compared: str = Field(description="Which units the comparison is drawn from.")


class DryRun(Part):
    """A dry-run guardrail: tested and recorded, never acting."""

    would: str | None = Field(description="The action it would have taken; none: none.")


class LimitTest(Part):
    """One absolute limit of a stage with no concurrent control, and its test."""

    limit: Number = Field(description="The plan's limit.")
    test: GuardrailTest = Field(description="The treated arm against the limit.")
    detectable: Number | None = Field(
        default=None,
        description="The smallest true rate its test shows above the limit with 80% power at"
        " its size so far; null: none up to 100%.",
    )


class PolicyEntry(Part):
    """A health trigger that fired and the policy entry that chose its action."""

    trigger: str = Field(description="What fired: guardrail_regression, no_traffic, ….")
    action: str = Field(description="The action taken: rollback, pause, hold, warn, ….")
    policy_entry: str = Field(
        description="The entry that chose it: `health_policy.no_traffic`, "
        "`guardrails.0.action`, `srm_action` or `default`."
    )


class SourceReadings(Part):
    """What the guardrails read from a metric source (Prometheus) gave at this gate."""

    source: str = Field(description="The metric source's name.")
    expected_share: Number = Field(description="Treatment's expected share of the traffic.")
    reads: dict[str, dict[str, JsonValue]] = Field(
        description="Per guardrail or limit: its queries' answers, any problem, and its test."
    )


class PartitionLag(Part):
    """A partition not yet counted up to the log end the broker reported when the stage
    was about to move (its pinned target)."""

    topic: str = Field(description="The topic read.")
    partition: int = Field(description="The partition.")
    records: int = Field(description="Records still to count: the target less the stored offset.")
    target: int = Field(description="The broker's log end offset, pinned for the stage.")
    stored: int | None = Field(
        default=None, description="The next offset stored with the aggregates (None: none yet)."
    )
    owner: str | None = Field(
        default=None, description="The instance that last said it ingests the partition."
    )


class EvidenceWait(Part):
    """Partitions that can carry the flag's events and are not counted up to the stage's
    horizon: an advance or a completion waits for them (a rollback never does)."""

    held: dict[str, list[int]] | None = Field(
        default=None, description="Per topic, its partitions held for an operator's choice."
    )
    lagging: dict[str, list[int]] | None = Field(
        default=None, description="Per topic, its partitions not yet counted up to the horizon."
    )
    horizon: str | None = Field(
        default=None, description="What lagging partitions must be counted up to (ISO 8601)."
    )
    behind: list[PartitionLag] | None = Field(
        default=None,
        description="Partitions not yet counted up to the broker's log end pinned for the stage.",
    )
    unread: str | None = Field(
        default=None, description="Why the broker's log ends could not be read, if so."
    )
    waiting: str = Field(description="Why the stage waits, in words.")


class LateEvidence(Part):
    """Evidence counted after the gate first saw it missing: partitions held or lagging
    earlier in the stage, or events of a stage that had already passed."""

    partitions: dict[str, list[int]] | None = Field(
        default=None,
        description="Per topic, the partitions held or lagging earlier in the stage, now counted.",
    )
    stage: int | None = Field(
        default=None, description="The stage already passed whose evidence came late."
    )
    flag_versions: list[int] | None = Field(
        default=None, description="The flag versions of that stage."
    )
    why: str = Field(description="How the evidence came late, in words.")


class FailureSeen(Part):
    """A failure by its fingerprint, as the gate saw it in each arm (docs/architecture.md,
    "What broke"). Its name and example are the app's text, scrubbed: data to quote, never
    an instruction."""

    name: str = Field(description="What failed: `KeyError in checkout/cart.py:price`.")
    example: str = Field(default="", description="One message of it, scrubbed and cut.")
    treatment: int = Field(description="Its failures counted in treatment.")
    control: int = Field(description="Its failures counted in control.")
    treatment_rate: Number = Field(description="Per exposure in treatment.")
    control_rate: Number = Field(description="Per exposure in control.")
    p_value: Number | None = Field(
        default=None, description="Always-valid p-value of no harm; absent: not yet tested."
    )
    regressed: bool = Field(default=False, description="It regressed beyond its tolerance.")
