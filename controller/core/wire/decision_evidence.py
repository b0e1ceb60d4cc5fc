"""A decision's evidence, typed by who decided: a tagged union of closed parts.

The decision's ``kind`` is the tag, never written into the evidence (the wire
is the one published since version 1): a rollout's own decisions (kinds
``transition``, ``gate``, ``command``, ``monitor``, ``advisor``, ``backend``)
carry :class:`RolloutEvidence`, a release pipeline's (``pipeline``)
:class:`PipelineEvidence`, and the audits of segments, app keys and ingest
commands theirs. A key may mean different things by kind: ``window`` is the
wait for a release window (an object) in a rollout's evidence, the window's
verdict (a string) in a pipeline's. Evidence too large to publish is
replaced by :class:`TruncatedEvidence`, whatever the kind.

Each part keeps the order its keys were given in (:mod:`ordered`), so the
JSON is the one published before, byte for byte. :func:`read_evidence` is
the tolerant reader of evidence read back.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field

from controller.core.wire.evidence import (
    AlphaSpent,
    ArmLatency,
    ArmTally,
    AudienceRing,
    BothArms,
    DryRun,
    ErrorBudget,
    EvidenceWait,
    FailureSeen,
    FinalLook,
    GuardrailTest,
    LateEvidence,
    LimitTest,
    PolicyEntry,
    SourceReadings,
    SrmCheck,
)
from controller.core.wire.json import JsonObject, Number
from controller.core.wire.ordered import Ordered, Part, tolerant


class GateEvidence(Part):
    """What a gate saw and concluded: each part present only when the gate wrote it."""

    arms: dict[str, ArmTally] | None = Field(default=None, description="Per arm its counts.")
    alpha: AlphaSpent | None = Field(default=None, description="How the plan's alpha is spent.")
    flag_versions: list[int] | None = Field(
        default=None, description="The flag versions whose events count for the stage."
    )
    guardrails: dict[str, GuardrailTest | Literal["insufficient data"]] | None = Field(
        default=None,
        description='Per guardrail its test; "insufficient data" below its event floor.',
    )
    srm: SrmCheck | None = Field(default=None, description="The sample-ratio check.")
    latency: dict[str, ArmLatency] | None = Field(
        default=None, description="Per arm its own latency quantiles."
    )
    both_arms: BothArms | None = Field(
        default=None, description="Watched units seen in both arms, when units are watched."
    )
    audience: AudienceRing | None = Field(default=None, description="A targeted rollout's ring.")
    sources: SourceReadings | None = Field(
        default=None, description="What the metric source gave, when guardrails read one."
    )
    comparison: str | None = Field(
        default=None, description="`none (no concurrent control)` when gated on limits."
    )
    error_budget: ErrorBudget | None = Field(
        default=None, description="The plan's burn-rate condition, when it names one."
    )
    limits: dict[str, LimitTest] | None = Field(
        default=None, description="Per absolute limit its test, with no concurrent control."
    )
    dry_run: dict[str, DryRun] | None = Field(
        default=None, description="Per dry-run guardrail what it would have done."
    )
    breach: str | None = Field(default=None, description="The guardrail or limit that acted.")
    early_advance: bool | None = Field(
        default=None, description="True when the stage ended before its minimum time."
    )
    final_look: FinalLook | None = Field(default=None, description="The stage's final look.")
    decided_by: Literal["always_valid", "final_look"] | None = Field(
        default=None, description="Which test decided a rollback or a stage's passing."
    )
    policy: PolicyEntry | None = Field(
        default=None, description="The health trigger and the policy entry applied."
    )
    incomplete: EvidenceWait | None = Field(
        default=None, description="Partitions not yet counted that the stage waits for."
    )
    late: LateEvidence | None = Field(
        default=None, description="Evidence counted late, which this verdict includes."
    )
    failures: list[FailureSeen] | None = Field(
        default=None,
        description="The failures by fingerprint that differ most between the arms, the most "
        "telling first (at most five): what broke, beside any verdict.",
    )

    def wire(self) -> JsonObject:
        """The evidence as published: only the parts written, infinities as strings."""
        written: JsonObject = self.model_dump(mode="json", exclude_unset=True)
        return written

    @classmethod
    def tolerant(cls, raw: object) -> Self:
        """The gate's parts of an evidence read back from a topic, a store or the network,
        by the one tolerant reader (:func:`controller.core.wire.ordered.tolerant`)."""
        return tolerant(cls, raw)


class StagePosition(Ordered):
    """Where the rollout stood in its plan when it was decided."""

    index: int = Field(description="The stage's index, from 0.")
    number: int | None = Field(default=None, description="The stage's number, from 1.")
    of: int = Field(description="Stages in the plan.")
    percent: Number = Field(description="The stage's percent of its ring.")
    label: str | None = Field(default=None, description='The stage in words: "stage 2/3 (50%)".')


class AdvisorReply(Ordered):
    """What the advisor said (``status: ok``) or why it could not (``unavailable``)."""

    status: Literal["ok", "unavailable"] = Field(description="Whether it gave advice.")
    action: Literal["advance", "hold", "rollback"] | None = Field(
        default=None, description="Its advice."
    )
    confidence: Number | None = Field(default=None, description="Its confidence, 0 to 1.")
    rationale: str | None = Field(default=None, description="Its words, kept as data.")
    coherent: bool | None = Field(default=None, description="Its words agree with its action.")
    incoherence: str | None = Field(default=None, description="How they disagree, when not.")
    model: str | None = Field(default=None, description="The model that answered.")
    cause: str | None = Field(default=None, description="Unavailable: why.")
    latency_ms: Number | None = Field(default=None, description="How long the call took, ms.")
    prompt_version: str | None = Field(default=None, description="The prompt's version.")


class OpinionOn(Ordered):
    """The gate an advisory opinion was asked at: it arrived after the gate decided."""

    rollout_id: str = Field(description="The rollout asked about.")
    stage: int = Field(description="The stage asked about.")
    flag_version: int = Field(description="The flag version the gate saw.")
    decided_at: str = Field(description="When the gate decided (ISO 8601).")
    statistical_verdict: str = Field(description="What the statistics decided.")


class WatchSettings(Ordered):
    """The plan's watch after the last stage, and what it can see."""

    duration_s: Number = Field(description="How long it watches, in seconds.")
    holdback_percent: Number = Field(description="The percent kept on control.")
    on_regression: str = Field(description="What a regression does: rollback or alert.")
    watched: str = Field(description="What the watch can see, in words.")


class WindowWait(Ordered):
    """A forward move waiting for a release window."""

    reason: str = Field(description="Why it may not move now.")
    decided_by: str | None = Field(description="The window that decided; none: no window.")
    opens_at: str | None = Field(description="When one opens next (ISO 8601); none: never.")


class ApprovalRecord(Ordered):
    """One approval given: who, with which key, in which role, when."""

    operator: str = Field(description="The operator the key names.")
    key_id: str = Field(description="The operator key that signed it.")
    holder: str = Field(description="The person holding the key.")
    role: str = Field(description="The role it counts for.")
    command_id: str = Field(description="The approve command.")
    at: str = Field(description="When it was given (ISO 8601).")


class ScheduleRecord(Ordered):
    """The scheduled start a decision is about."""

    at: str = Field(description="When the start was scheduled for (ISO 8601, or `?`).")
    command_id: str | None = Field(default=None, description="The command that scheduled it.")


class TimeBoxRecord(Ordered):
    """The plan's time box, whose end turned the flag off."""

    starts_at: str | None = Field(description="When it starts (ISO 8601); none: at once.")
    ends_at: str = Field(description="When it ends (ISO 8601).")


class RolloutEvidence(GateEvidence, Ordered):
    """A rollout's decision: the gate's parts when a gate decided, and the parts of
    the other producers (advisor, watch, monitors, windows, approvals, schedule,
    time box, a stage overdue, a change made by hand), where it stood and who signed."""

    advisor: AdvisorReply | None = Field(default=None, description="The advisor's reply.")
    advisor_mode: str | None = Field(default=None, description="`advisory`: it acts on nothing.")
    opinion_on: OpinionOn | None = Field(default=None, description="The gate it was asked at.")
    watch: WatchSettings | None = Field(default=None, description="The watch entered or ended.")
    monitor: str | None = Field(default=None, description="The uptime monitor that changed.")
    incident: str | None = Field(default=None, description="The monitor's incident id.")
    window: WindowWait | None = Field(default=None, description="The release window waited for.")
    approval: ApprovalRecord | None = Field(default=None, description="The approval given.")
    needed: dict[str, int] | None = Field(default=None, description="Approvals missing by role.")
    approved: dict[str, list[str]] | None = Field(
        default=None, description="Who approved, by role."
    )
    removed: list[ApprovalRecord] | None = Field(
        default=None, description="Approvals a key revocation took away."
    )
    schedule: ScheduleRecord | None = Field(default=None, description="The scheduled start.")
    time_box: TimeBoxRecord | None = Field(default=None, description="The time box that ended.")
    stage: int | None = Field(default=None, description="Overdue: the stage's index.")
    phase: str | None = Field(default=None, description="Overdue: the rollout's phase.")
    max_duration_s: Number | None = Field(
        default=None, description="Overdue: the stage's max_duration, in seconds."
    )
    feature: str | None = Field(default=None, description="Changed by hand: the feature.")
    project: str | None = Field(default=None, description="Changed by hand: its project.")
    environment: str | None = Field(default=None, description="Changed by hand: where.")
    changes: list[str] | None = Field(default=None, description="Changed by hand: what.")
    serving: JsonObject | None = Field(
        default=None, description="Changed by hand: what the flag platform serves, as it says."
    )
    at_stage: StagePosition | None = Field(default=None, description="The stage decided at.")
    actor: str | None = Field(default=None, description="Who sent the command.")
    key_id: str | None = Field(default=None, description="The operator key that signed it.")

    @classmethod
    def of_gate(cls, gate: GateEvidence) -> RolloutEvidence:
        """A gate's evidence as its decision's: its parts in the order the gate writes them."""
        return cls.model_validate({n: getattr(gate, n) for n in _written(gate)})

    def gate(self) -> GateEvidence:
        """The gate's parts alone."""
        return GateEvidence.model_validate(
            {n: getattr(self, n) for n in GateEvidence.model_fields if self.given(n)}
        )


def _written(gate: GateEvidence) -> list[str]:
    return [n for n in GateEvidence.model_fields if n in gate.model_fields_set]


class Soak(Ordered):
    """The soak after the previous environment completed."""

    soak_for: str = Field(alias="for", description="How long it soaks.")
    until: str = Field(description="When it ends (ISO 8601).")


class RolloutEnding(Ordered):
    """What decided the end of an environment's rollout, when it kept it."""

    decided: str | None = Field(default=None, description="The deciding action.")
    by: str | None = Field(default=None, description="The kind of decision: gate, command, ….")


class PipelineEvidence(Ordered):
    """A release pipeline's decision: its gate, a step's start or stop, an approval."""

    actor: str | None = Field(default=None, description="Who started the pipeline.")
    command_id: str | None = Field(default=None, description="The pipeline command.")
    key_id: str | None = Field(default=None, description="The key that signed it.")
    after: str | None = Field(default=None, description="The environment before this step.")
    completed_at: str | None = Field(default=None, description="When it completed.")
    completed_rollout: str | None = Field(default=None, description="Its rollout.")
    soak: Soak | None = Field(default=None, description="The step's soak.")
    approvals: list[ApprovalRecord] | None = Field(default=None, description="Live approvals.")
    approvals_needed: dict[str, int] | None = Field(
        default=None, description="Approvals the step needs, by role."
    )
    window: str | None = Field(default=None, description="The release windows' verdict.")
    rollout_id: str | None = Field(default=None, description="The environment's rollout.")
    plan: str | None = Field(default=None, description="The plan it starts with.")
    overridden: list[str] | None = Field(default=None, description="The plan's overrides.")
    outcome: str | None = Field(default=None, description="How the rollout ended.")
    reason: str | None = Field(default=None, description="Why it ended.")
    rollout: RolloutEnding | None = Field(default=None, description="What ended it.")
    not_started: list[str] | None = Field(default=None, description="Steps that will not start.")
    still_running: list[str] | None = Field(default=None, description="Steps running on.")
    approval: ApprovalRecord | None = Field(default=None, description="The approval given.")
    needed: dict[str, int] | None = Field(default=None, description="Approvals missing by role.")
    approved: dict[str, list[str]] | None = Field(
        default=None, description="Who approved, by role."
    )
    removed: list[ApprovalRecord] | None = Field(
        default=None, description="Approvals a key revocation took away."
    )
    run_id: str | None = Field(default=None, description="The pipeline's run.")
    pipeline: str | None = Field(default=None, description="The pipeline's name.")
    environment: str | None = Field(default=None, description="The step's environment.")
    key: str | None = Field(default=None, description="The decision's key in its run.")


class AppKeyRecord(Ordered):
    """An app key as a person may see it: everything but its hash."""

    id: str = Field(description="The key's id.")
    name: str = Field(description="The key's name.")
    scopes: list[str] = Field(description="What it may do: evaluate, events.")
    client: bool = Field(description="A key for code in a browser or an app.")
    environment: str | None = Field(description="The environment it serves; none: the default.")
    created_ms: int = Field(description="When it was created (Unix ms).")
    created_by: str = Field(description="Who created it.")
    revoked_ms: int | None = Field(description="When it was revoked (Unix ms).")
    revoked_by: str | None = Field(description="Who revoked it.")
    applied: str | None = Field(
        default=None,
        description="SHA-256 of the desired key `rolloutctl apply` sent; absent: made by hand.",
    )


class AppKeyEvidence(Ordered):
    """An app-key command's decision."""

    actor: str | None = Field(default=None, description="Who sent the command.")
    reason: str | None = Field(default=None, description="The operator's reason.")
    app_key: AppKeyRecord | None = Field(default=None, description="The key, once applied.")


class IngestEvidence(Ordered):
    """An ingest command's decision (a gap in the events' log)."""

    actor: str | None = Field(default=None, description="Who sent the command.")
    reason: str | None = Field(default=None, description="The operator's reason.")
    partitions: list[int] | None = Field(default=None, description="The partitions applied to.")


class SegmentEvidence(Ordered):
    """A segment command's decision, and the segment's new version."""

    segment: str | None = Field(default=None, description="The segment.")
    actor: str | None = Field(default=None, description="Who sent the command.")
    version: int | None = Field(default=None, description="Its new version.")
    deleted: bool | None = Field(default=None, description="It was deleted.")
    count: int | None = Field(default=None, description="Its ids.")
    sha256: str | None = Field(default=None, description="The digest of its ids.")
    parts: int | None = Field(default=None, description="The parts its ids travel in.")
    rule: JsonObject | None = Field(default=None, description="Its rule, for a rule segment.")


class TruncatedEvidence(Ordered):
    """Evidence too large to publish, replaced by a note of its size and digest."""

    truncated: Literal[True] = Field(description="Always true.")
    bytes: int = Field(description="The evidence's size as JSON.")
    sha256: str = Field(description="The SHA-256 of that JSON.")
    keys: list[str] = Field(description="Its top-level keys (the first 50).")


DecisionEvidence = (
    RolloutEvidence
    | PipelineEvidence
    | SegmentEvidence
    | AppKeyEvidence
    | IngestEvidence
    | TruncatedEvidence
)
"""A decision's evidence: which part, the decision's kind says (:data:`BY_KIND`)."""

BY_KIND: dict[str, type[Ordered]] = {
    "pipeline": PipelineEvidence,
    "segment": SegmentEvidence,
    "app_key": AppKeyEvidence,
    "ingest": IngestEvidence,
}
"""The evidence of each kind of decision not a rollout's own."""


def gate_of(evidence: DecisionEvidence) -> GateEvidence:
    """The gate's parts of a decision's evidence; none for a decision not a rollout's own."""
    return evidence if isinstance(evidence, RolloutEvidence) else GateEvidence()


def evidence_type(kind: object, raw: object) -> type[Ordered]:
    """The part a decision of ``kind`` carries as its evidence ``raw``."""
    if isinstance(raw, dict) and raw.get("truncated") is True:
        return TruncatedEvidence
    return BY_KIND.get(kind, RolloutEvidence) if isinstance(kind, str) else RolloutEvidence


def read_evidence(kind: object, raw: object) -> DecisionEvidence:
    """The evidence of a decision of ``kind`` read back: the one tolerant reader."""
    read = tolerant(evidence_type(kind, raw), raw, partial=True)
    assert isinstance(read, DecisionEvidence)
    return read
