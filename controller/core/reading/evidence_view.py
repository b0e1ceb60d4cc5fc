"""A decision's evidence as the read side shows it: typed, and read part by part.

A decision's ``evidence`` (and a status's) stays an open object on the wire:
its shape is its maker's (the gate's arms, guardrail tests and sample-ratio
check; the stage it was taken at; the advisor's opinion; the policy entry of a
health trigger; the release window waited for; the operator of a command).
:class:`Evidence` reads the parts the report, the console and ``rolloutctl``
show into typed fields. The evidence comes from a topic or over the network,
so each part is read on its own: a part of the wrong shape is left out (None,
an empty text, no flag), never raised, and costs a blank cell, not the page.
Infinities arrive as ``"inf"``/``"-inf"`` (JSON has none); NaN and booleans
are no numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from controller.core.common import iso_or_none
from controller.core.reading.wording import ms_text, percent_text, position_label, rate_counts
from controller.core.rollouts import parse_number
from controller.core.wire import AdvisorReply, Decision, RolloutEvidence, tolerant

MAX_NAMED = 50
"""The most arms or guardrails read from one evidence: a plan has a handful."""
MAX_AUDIENCE_CHARS = 400
"""The most characters of an audience's text kept (a rule's text is far shorter)."""


def _object(value: object) -> object:
    """An object's fields (every part of the models below reads any value without failing),
    a part already read as it is, or None for anything else."""
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    return value if isinstance(value, BaseModel) else None


def _objects(value: object) -> dict[str, object] | None:
    """Per name (at most :data:`MAX_NAMED`, in order) an object's fields, or None for a value
    that is no object; None for anything that is no object itself."""
    if not isinstance(value, Mapping):
        return None
    return {str(k): _object(v) for k, v in islice(value.items(), MAX_NAMED)}


def _advisor(value: object) -> AdvisorReply | None:
    """The advisor's reply, or None for one that is no reply (damaged, or of another kind)."""
    if isinstance(value, AdvisorReply) or not isinstance(value, Mapping):
        return value if isinstance(value, AdvisorReply) else None
    read = tolerant(AdvisorReply, value)
    return read if read.given("status") else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _counts(value: object) -> dict[str, int | None] | None:
    """Per name (at most :data:`MAX_NAMED`, in order) a whole number or None; None for
    anything that is no object."""
    if not isinstance(value, Mapping):
        return None
    return {str(k): _count(v) for k, v in islice(value.items(), MAX_NAMED)}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _short(value: object) -> str:
    return value[:MAX_AUDIENCE_CHARS] if isinstance(value, str) else ""


Number = Annotated[float | None, BeforeValidator(parse_number)]
"""A number from evidence: None when absent or not one."""
Count = Annotated[int | None, BeforeValidator(_count)]
"""A whole number (never a boolean): None when absent or not one."""
Text = Annotated[str, BeforeValidator(_text)]
"""A string: empty when absent or not one."""
Short = Annotated[str, BeforeValidator(_short)]
"""A string cut at :data:`MAX_AUDIENCE_CHARS`: empty when absent or not one."""
Flag = Annotated[bool, BeforeValidator(lambda value: value is True)]
"""True only when the evidence says ``true``."""
Time = Annotated[str | None, BeforeValidator(iso_or_none)]
"""A time as ISO 8601 (from epoch ms or ISO 8601): None when unreadable."""


class _Read(BaseModel):
    # Newer makers add fields: those the read side does not show are ignored.
    model_config = ConfigDict(frozen=True, extra="ignore")


class Position(_Read):
    """Where a message was taken: the stage as numbers (``at_stage``)."""

    index: Count = None
    of: Count = None
    percent: Number = None

    def label(self) -> str | None:
        """``stage 3/5 (25%)``; None when the index is no stage."""
        return position_label(self.index, self.of, self.percent)


class ArmTally(_Read):
    """One arm's counts as the gate saw them."""

    units: Count = None
    exposures: Count = None
    requests: Count = None
    errors: Count = None
    conversions: Count = None
    crashes: Count = None
    exceptions: Count = None
    named_conversions: Annotated[dict[str, int | None] | None, BeforeValidator(_counts)] = None
    """The conversions of each name the plan's guardrails read (absent from older gates)."""

    def rate(self, metric: str) -> float | None:
        """The arm's error or conversion rate (a share); None for other metrics or no counts.

        ``metric`` may be a guardrail's key naming a conversion
        (``conversion_rate:checkout_completed``): that name's conversions per exposure.
        """
        counts = rate_counts(metric, self.model_dump())
        if counts is None:
            return None
        part, whole = counts
        return part / whole if isinstance(part, int) and whole else None


class ArmLatency(_Read):
    """One arm's own latency as the gate saw it: quantiles in ms, None while it had none."""

    p50: Number = None
    p95: Number = None
    p99: Number = None
    count: Count = None

    def text(self) -> str:
        """``p50 21.0 ms · p95 48.2 ms · p99 95.1 ms (n 1,204)``, or that there is none yet."""
        if self.p50 is None and self.p95 is None and self.p99 is None:
            return "no latency events yet"
        shown = " · ".join(f"{name} {ms_text(getattr(self, name))}" for name in LATENCY_NAMES)
        return shown if self.count is None else f"{shown} (n {self.count:,})"


LATENCY_NAMES = ("p50", "p95", "p99")
"""The quantiles of each arm's latency the gate publishes."""


class GuardrailTest(_Read):
    """One guardrail's sequential test: Δ (treatment - control), its bound, the tolerance."""

    delta: Number = None
    lower: Number = None
    upper: Number = None
    tolerance: Number = None
    direction: Text = ""
    """``lower_is_better`` or ``higher_is_better``; empty from an evidence that gave none."""
    p_value: Number = None
    regressed: Flag = False


class SrmCheck(_Read):
    """The sample-ratio check: treatment's units against what the split expects."""

    observed_treatment: Number = None
    observed_control: Number = None
    expected_treatment: Number = None
    sequential_p_value: Number = None
    p_value: Number = None
    """The fixed-sample p-value, which an older gate gave alone."""
    chi2: Number = None
    p_threshold: Number = None
    flagged: Flag = False

    def word(self) -> str:
        """``mismatch``, ``ok``, ``no units yet`` or ``not checked: one arm`` (:func:`srm_word`)."""
        return srm_word(
            self.flagged, self.observed_treatment, self.observed_control, self.expected_treatment
        )


def srm_word(
    flagged: bool,
    treatment: float | None,
    control: float | None,
    expected_treatment: float | None = None,
) -> str:
    """The sample-ratio check in a word: ``mismatch``, ``ok``, ``no units yet`` while the
    arms it counted hold no unit, since 0 against 0 expected is no ratio checked (a ring whose
    rule matches nobody reads so), or ``not checked: one arm`` where the split serves every
    unit one arm (a stage at 100%, no control: what the other arm holds, late exposures or
    units outside a ring, says nothing of the split). Counts an older gate did not give are
    not taken as 0."""
    if flagged:
        return "mismatch"
    counted = [n for n in (treatment, control) if n is not None]
    if counted and not any(counted):
        return "no units yet"
    if expected_treatment is not None and treatment is not None and control is not None:
        total = treatment + control
        if total > 0 and (expected_treatment <= 0 or expected_treatment >= total):
            return "not checked: one arm"
    return "ok"


class PolicyEntry(_Read):
    """A health trigger that fired and the policy entry that chose its action."""

    trigger: Text = ""
    action: Text = ""
    policy_entry: Text = ""


class Window(_Read):
    """The release window a ``wait`` decision waits for."""

    opens_at: Time = None


class Ring(_Read):
    """A targeted rollout's ring at the gate: whom its comparison was drawn from."""

    rollout: Short = ""
    """The rollout's audience in the rule text form; empty when it has none."""
    stage: Short = ""
    """The stage's ring in the rule text form: ``everyone`` when the stage names none."""
    percent: Number = None

    def text(self) -> str:
        """``segment("staff") 100%``, with ``within <audience>`` when the rollout has one."""
        share = "" if self.percent is None else f" {percent_text(self.percent)}"
        ring = f"{self.stage or 'everyone'}{share}"
        return f"{ring} within {self.rollout}" if self.rollout else ring


class Wait(_Read):
    """The partitions a stage waits for (the evidence's ``incomplete``)."""

    waiting: Text = ""


class Late(_Read):
    """Evidence counted late, which the verdict includes (the evidence's ``late``)."""

    why: Text = ""


Arms = Annotated[dict[str, ArmTally | None] | None, BeforeValidator(_objects)]
Latencies = Annotated[dict[str, ArmLatency | None] | None, BeforeValidator(_objects)]
"""Per arm its latency quantiles (the evidence's ``latency``); None from a gate that gave none."""
Guardrails = Annotated[dict[str, GuardrailTest | None] | None, BeforeValidator(_objects)]
"""Per metric its test; None for a metric with too little data (``"insufficient data"``)."""


class Evidence(_Read):
    """The parts of a decision's (or a status's) evidence the read side shows."""

    at_stage: Annotated[Position | None, BeforeValidator(_object)] = None
    arms: Arms = None
    guardrails: Guardrails = None
    latency: Latencies = None
    srm: Annotated[SrmCheck | None, BeforeValidator(_object)] = None
    advisor: Annotated[AdvisorReply | None, BeforeValidator(_advisor)] = None
    """The advisor's opinion, read by :func:`controller.core.reading.advisor_text.advice_text`."""
    policy: Annotated[PolicyEntry | None, BeforeValidator(_object)] = None
    window: Annotated[Window | None, BeforeValidator(_object)] = None
    actor: Text = ""
    key_id: Text = ""
    monitor: Text = ""
    audience: Annotated[Ring | None, BeforeValidator(_object)] = None
    """A targeted rollout's ring; None when untargeted."""
    incomplete: Annotated[Wait | None, BeforeValidator(_object)] = None
    """The partitions the stage waits for; None when its evidence is complete."""
    late: Annotated[Late | None, BeforeValidator(_object)] = None
    """Evidence counted late; None when none was."""
    comparison: Text = ""
    """What the arms were compared against; the stage's limits alone without a control."""

    @classmethod
    def read(cls, evidence: object) -> Evidence:
        """``evidence`` read part by part; an evidence that is no object reads as empty."""
        if isinstance(evidence, BaseModel):
            evidence = evidence.model_dump(mode="json")
        return cls.model_validate(evidence) if isinstance(evidence, Mapping) else cls()

    @property
    def gated(self) -> bool:
        """Whether this is the gate's evidence: it counted the arms."""
        return self.arms is not None


def evidence(decision: Decision) -> Evidence:
    """A decision's evidence, read."""
    return Evidence.read(decision.evidence)


@dataclass(frozen=True, slots=True)
class ReadDecision:
    """A decision with its evidence read once, for the views that read it many times."""

    decision: Decision
    evidence: Evidence

    @classmethod
    def of(cls, decision: Decision) -> ReadDecision:
        return cls(decision, evidence(decision))

    def label(self) -> str | None:
        """The stage it was taken at, in words (:func:`decision_label`)."""
        return decision_label(self.decision, self.evidence)


def decision_label(decision: Decision, read: Evidence | None = None) -> str | None:
    """The stage a decision was taken at, in words (its ``at_stage``, else its ``stage``)."""
    position = (read or evidence(decision)).at_stage
    label = position.label() if position is not None else None
    return label if label is not None else position_label(decision.stage, None, None)


def where_decided(decision: Decision) -> str:
    """``at stage 2/5 (5%) (now stage 3/5)``: where a decision was taken, and where it left
    the rollout when elsewhere; empty when it names no stage."""
    read = evidence(decision)
    label = decision_label(decision, read)
    if label is None:
        return ""
    position = read.at_stage
    if position is None or decision.stage == position.index:
        return f"at {label}"
    now = position_label(decision.stage, position.of, None)
    return f"at {label} (now {now})" if now else f"at {label}"


def read_back(raw: object) -> RolloutEvidence:
    """A status served by any controller: its evidence read field by field, to be shown."""
    return tolerant(RolloutEvidence, raw, partial=True)


# --- the plan's holdout beside the sample ratio ---------------------------------------------
#
# A plan that names a holdout keeps a share of units out of every release; the apps report
# their events with cohort ``holdout``, counted in cells of their own. A rollout whose apps
# send no such event reads "ok" on its own arms' sample ratio all the same: the check from the
# holdout's cells (controller.core.holdouts' cohort_check, worded by its ratio_text, as the
# holdout's report says it) is shown beside it.


class HoldoutCheck(BaseModel):
    """The plan's holdout seen from one rollout: held-out units against those expected."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    holdout: str = Field(description="The holdout the plan names.")
    missing: bool = Field(
        description="No held-out unit where some were expected: the apps may not report"
        " cohort holdout with their events."
    )
    text: str = Field(description="In words, as the holdout's report says it.")


COHORT_MISSING = "holdout cohort missing"
"""What the sample-ratio check adds, in a word, when the holdout's cohort is missing."""


def ratio_word(word: str, holdout: HoldoutCheck | None) -> str:
    """The sample-ratio check in a word (``ok``, ``mismatch``, …), with the holdout's
    cohort where it is missing: ``ok; holdout cohort missing``."""
    return f"{word}; {COHORT_MISSING}" if holdout is not None and holdout.missing else word


def holdout_line(holdout: HoldoutCheck) -> str:
    """``holdout h1: no held-out units against 120 expected (do the apps report …?)``."""
    return f"holdout {holdout.holdout}: {holdout.text}"
