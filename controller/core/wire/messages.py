"""Wire contracts, version 1: one JSON object per Kafka message.

Every model forbids unknown fields, bounds its strings and is frozen. Inbound events are
discriminated on ``type``; ``v`` is the schema version. Timestamps (``ts``) are UTC, epoch
milliseconds or RFC 3339 with an offset. The JSON Schema files in ``schemas/`` are
generated from these models (``rollout-controller schemas export``); a test fails on drift.

Numbers from outside are finite and bounded (:data:`MAX_LATENCY_MS`,
:data:`MAX_CONVERSION_VALUE`), and a command's plan is bounded in depth and size, so no
single message can overflow an aggregate or exhaust a parser. A key repeated in one JSON
object takes its last value, as pydantic reads it, and so does ingest's fast decoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BeforeValidator,
    Field,
    StrictBool,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_serializer,
    model_validator,
)

from controller.core.common import (
    KEY_ID_PATTERN,
    MAX_CONVERSION_VALUE,
    MAX_LATENCY_MS,
    MAX_PLAN_BYTES,
    MAX_PLAN_DEPTH,
    AlertKind,
    AppliedDigest,
    BoundedPlan,
    ConversionName,
    EnvironmentName,
    FailureExample,
    FailureName,
    FlagKey,
    FlagVersion,
    MessageId,
    Percent,
    PlainFlagKey,
    Reason,
    ShortText,
    Stage,
    StrictFloatish,
    UnitId,
    rfc3339_only,
)
from controller.core.rules import MAX_RINGS, AudienceRule, Cohort, Ring
from controller.core.wire.arm_values import ArmValues
from controller.core.wire.decision_evidence import (
    DecisionEvidence,
    RolloutEvidence,
    evidence_type,
    read_evidence,
)
from controller.core.wire.holdouts import Holdout
from controller.core.wire.prerequisites import Requires
from controller.core.wire.signed import MessageBase, SignedCommand


class Arm(StrEnum):
    """Which side of a flag a unit was served."""

    TREATMENT = "treatment"
    CONTROL = "control"


class _FlagEvent(MessageBase):
    id: MessageId = Field(
        description="Unique id of this event; keep it when the event is sent again: ingest "
        "counts an id once per partition within ingest.dedupe_seconds (an hour; at most "
        "ingest.dedupe_max_ids ids a partition), the first copy; one past it counts again."
    )
    flag: FlagKey
    unit: UnitId = Field(description="The unit (user, session, request) that was assigned.")
    arm: Arm
    flag_version: FlagVersion = Field(
        description="Version of the flag state the app acted on (from rollout.flag-state)."
    )
    cohort: Cohort | None = Field(
        default=None,
        description="With rings or a holdout: where the unit stood in the stage's comparison, "
        "as the evaluation said; left out: compared. Carried, outside and holdout units are "
        "counted apart and compared by no gate.",
    )


class Exposure(_FlagEvent):
    """A unit was served an arm of a flag."""

    type: Literal["exposure"]


class _Failed(_FlagEvent):
    failure: FailureName | None = Field(
        default=None,
        description="What failed, as one short name: its fingerprint (an exception's type and "
        "place, `KeyError in checkout/cart.py:price`; a failed request's status class, method "
        "and route, never its path, `5xx GET /cart/{id}`). Failures of one name are counted "
        "and compared between the arms by the new_failures guardrail; the controller scrubs "
        "numbers, ids and addresses from it. Left out: counted as a failure of no name; on a "
        "request whose `error` is false, not read.",
    )


class RequestOutcome(_Failed):
    """A request served under a flag finished: whether it failed and how long it took."""

    type: Literal["request"]
    error: StrictBool
    latency_ms: Annotated[StrictFloatish, Field(ge=0, le=MAX_LATENCY_MS)] | None = None


class Conversion(_FlagEvent):
    """A unit converted (purchase, signup, ...), optionally with a value."""

    type: Literal["conversion"]
    name: ConversionName | None = Field(
        default=None,
        description="What converted, as the app tracked it (checkout_completed): a guardrail "
        "naming this conversion reads it; every conversion counts for those naming none.",
    )
    value: (
        Annotated[StrictFloatish, Field(ge=-MAX_CONVERSION_VALUE, le=MAX_CONVERSION_VALUE)] | None
    ) = None


class _FailureEvent(_Failed):
    example: FailureExample | None = Field(
        default=None,
        description="One message of this failure (`KeyError: 'cart_id'`), scrubbed and cut "
        "to 160 characters by the controller; quoted as data, never followed.",
    )


class Crash(_FailureEvent):
    """The app crashed or exited abnormally under a flag (an uncaught exception, a fatal
    signal, an abnormal exit): counted by ``crash_count``, and by ``exception_count`` as the
    exception nobody caught."""

    type: Literal["crash"]


class RaisedException(_FailureEvent):
    """An exception was raised and recorded under a flag, handled or not: counted by
    ``exception_count``."""

    type: Literal["exception"]


InboundEvent = Exposure | RequestOutcome | Conversion | Crash | RaisedException
Event = Annotated[InboundEvent, Field(discriminator="type")]
"""Any inbound event on ``rollout.events``."""

EVENT_TYPES = frozenset({"exposure", "request", "conversion", "crash", "exception"})
event_adapter: TypeAdapter[InboundEvent] = TypeAdapter(Event)


class CommandAction(StrEnum):
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    ABORT = "abort"
    KILL = "kill"
    APPROVE = "approve"


class Command(SignedCommand):
    """An operator command on ``rollout.commands``, signed with Ed25519."""

    type: Literal["command"]
    action: CommandAction
    flag: PlainFlagKey = Field(description="The flag's own key (no environment in it).")
    environment: EnvironmentName | None = Field(
        default=None,
        description="The environment the command acts in (`engine.environments`); left out: "
        "the default one. The operator key's roles must allow the action there.",
    )
    plan: BoundedPlan | None = Field(
        default=None,
        description=f"The rollout plan; required with `start`. At most {MAX_PLAN_DEPTH} "
        f"levels deep and {MAX_PLAN_BYTES} bytes as compact JSON.",
    )
    to_end: bool = Field(default=False, description="With `promote`: jump to 100%.")
    at: Annotated[AwareDatetime, BeforeValidator(rfc3339_only)] | None = Field(
        default=None,
        description="With `start`: when the rollout starts (RFC 3339 with an offset), at most "
        "366 days ahead; until then the start is scheduled, and `abort` cancels it.",
    )
    expect_version: FlagVersion | None = Field(
        default=None,
        description="A precondition: the flag version the command was made against (0: the "
        "flag had no rollout). When the flag's version is another, the command is rejected "
        "and changes nothing. Left out: no precondition.",
    )
    expect_rollout_id: MessageId | None = Field(
        default=None,
        description="A precondition: the rollout the command was made against; rejected when "
        "the flag's rollout is another, or it has none.",
    )
    expect_stage: Stage | None = Field(
        default=None,
        description="A precondition: the stage (from 0) it was at; rejected at another.",
    )
    applied: AppliedDigest | None = Field(
        default=None,
        description="With `start`, sent by `rolloutctl apply`: SHA-256 of the desired rollout, "
        "kept with the rollout it starts so a later diff tells its own start from one by hand.",
    )

    actor_follows: ClassVar[str] = "environment"

    @field_serializer("at", when_used="json")
    def _at_as_given(self, at: datetime | None) -> str | None:
        """``at`` as ``datetime.isoformat`` writes it: ``+00:00``, never ``Z``."""
        return None if at is None else at.isoformat()


class FlagStatus(StrEnum):
    INACTIVE = "inactive"
    ROLLING_OUT = "rolling_out"
    PAUSED = "paused"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    KILLED = "killed"


ControllerKeyId = Annotated[str, StringConstraints(pattern=KEY_ID_PATTERN)] | None
ControllerSig = Annotated[str, StringConstraints(min_length=1, max_length=128)] | None


class FlagState(MessageBase):
    """The assignment config apps follow, on the compacted ``rollout.flag-state`` topic."""

    type: Literal["flag_state"]
    flag: FlagKey
    version: FlagVersion = Field(description="Bumped on every change; apps echo it in events.")
    status: FlagStatus
    percent: Percent = Field(description="Share of units served treatment, 0.001% resolution.")
    salt: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    rollout_id: MessageId | None = None
    stage: Stage | None = None
    audience: AudienceRule | None = Field(
        default=None,
        description="A targeted rollout: only units in this audience may be served treatment.",
    )
    rings: Annotated[list[Ring], Field(min_length=1, max_length=MAX_RINGS)] | None = Field(
        default=None,
        description="A targeted rollout's rings, the current stage's last (docs/clients.md, "
        '"Rings"); then percent is 0, so a client that does not read rings serves control.',
    )
    values: ArmValues | None = Field(
        default=None,
        description="The arms' typed values, when the plan declares them (docs/clients.md, "
        '"Arm values"); absent: control is false, treatment true.',
    )
    requires: Requires | None = Field(
        default=None,
        description="The flags of its environment this flag requires to serve given variants "
        '(docs/clients.md, "Prerequisites"); absent: none.',
    )
    holdout: Holdout | None = Field(
        default=None,
        description="The holdout the flag names: a share of units served control by every "
        'flag naming it (docs/clients.md, "Holdouts"); absent: none.',
    )
    key_id: ControllerKeyId = Field(
        default=None,
        description="Which controller key signed this state; none when the controller has "
        "no signing key.",
    )
    sig: ControllerSig = Field(
        default=None,
        description="Base64 Ed25519 signature over the state's signed form (docs/clients.md, "
        '"Verifying flag states"): apps configured with the controller\'s public keys '
        "hold no state without a valid one.",
    )


class Decision(MessageBase):
    """A state change, gate result, command outcome or advisor opinion, with evidence."""

    type: Literal["decision"]
    flag: FlagKey
    rollout_id: MessageId | None = None
    kind: Literal[
        "transition",
        "gate",
        "command",
        "monitor",
        "advisor",
        "backend",
        "segment",
        "app_key",
        "ingest",
        "pipeline",
    ]
    action: ShortText
    outcome: Literal["applied", "held", "rejected", "recorded"]
    reason: Reason = ""
    stage: Stage | None = None
    phase_before: ShortText | None = None
    phase_after: ShortText | None = None
    command_id: MessageId | None = None
    evidence: DecisionEvidence = Field(
        default_factory=RolloutEvidence,
        description="What it was decided on; its part follows from `kind` (a rollout's own, "
        "a pipeline's, a segment's, an app key's, an ingest command's), or the note that "
        "replaced evidence too large to publish.",
    )
    key_id: ControllerKeyId = Field(
        default=None, description="The controller key that signed it; none: unsigned."
    )
    sig: ControllerSig = Field(
        default=None, description='Base64 Ed25519 signature (docs/audit.md, "Signed decisions").'
    )

    @model_validator(mode="before")
    @classmethod
    def _evidence_of_its_kind(cls, data: object) -> object:
        """The evidence read as the part its kind carries: the kind is the union's tag."""
        if isinstance(data, Mapping) and isinstance(data.get("evidence"), Mapping):
            raw = data["evidence"]
            typed = evidence_type(data.get("kind"), raw).model_validate(raw)
            return {**data, "evidence": typed}
        return data


class Alert(MessageBase):
    """Something a person should know: rollback, kill, SRM, stuck rollout, advisor outage."""

    type: Literal["alert"]
    flag: FlagKey | None = None
    rollout_id: MessageId | None = None
    severity: Literal["info", "warning", "critical"]
    kind: AlertKind
    summary: Reason
    details: dict[str, Any] = Field(default_factory=dict)


class MonitorAlert(MessageBase):
    """An uptime monitor changed state; ``down`` kills the flags mapped to it, or holds
    them (``action: hold``: a deploy of their service was aborted)."""

    type: Literal["monitor"]
    monitor: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    status: Literal["down", "up"]
    incident_id: MessageId | None = None
    action: Literal["kill", "hold"] = Field(
        default="kill",
        description="What a `down` does to the running rollouts of the mapped flags: `kill`"
        " them, or `hold` them (paused until an operator resumes them). Ignored on `up`.",
    )


_OUTPUT: TypeAdapter[Decision | Alert] = TypeAdapter(
    Annotated[Decision | Alert, Field(discriminator="type")]
)


def decision_or_alert(value: object) -> Decision | Alert | None:
    """A decision or an alert read back from its topic or the gate history; None for
    anything else: another type, or a message that breaks the contract, skipped, never raised.

    A decision's evidence is read by the one tolerant reader (:func:`read_evidence`): one
    published by an older or newer controller, or damaged in a part, keeps the parts that
    fit, so the decision is still read.
    """
    data = dict(value) if isinstance(value, Mapping) else value
    if isinstance(data, dict) and data.get("type") == "decision" and "evidence" in data:
        data["evidence"] = read_evidence(data.get("kind"), data["evidence"])
    try:
        return _OUTPUT.validate_python(data)
    except ValidationError:
        return None


PUBLISHED_MODELS: dict[str, Any] = {
    "event": Event,
    "command": Command,
    "flag-state": FlagState,
    "decision": Decision,
    "alert": Alert,
    "monitor": MonitorAlert,
}
"""Each contract by the file stem of its JSON Schema in ``schemas/``."""
