"""Wire contracts, version 1: one JSON object per Kafka message.

Every model forbids unknown fields, bounds its strings and is frozen. Inbound
events are discriminated on ``type``; ``v`` is the schema version. Timestamps
(``ts``) are UTC, given as epoch milliseconds or an RFC 3339 string with an
offset. The JSON Schema files in ``schemas/`` are generated from these models
(``rollout-controller schemas export``) and a test fails when they drift.

Numbers from outside are finite and bounded (:data:`MAX_LATENCY_MS`,
:data:`MAX_CONVERSION_VALUE`), and a command's plan is bounded in depth and
size, so no single message can overflow an aggregate or exhaust a parser. A
key repeated in one JSON object takes its last value, as pydantic reads it;
ingest's fast decoder follows the same rule (:mod:`decoding`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import msgspec
import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from controller.core.arm_values import ArmValues
from controller.core.audience import AudienceRule
from controller.core.targeting import MAX_RINGS, Cohort, Ring

SCHEMA_VERSION = 1
FLAG_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
KEY_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
"""A signing key's id, as flag states carry it."""
MAX_EPOCH_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last instant a timestamp may name."""
MAX_LATENCY_MS = 86_400_000
"""A day: a request latency beyond it is an input error, not a measurement."""
MAX_CONVERSION_VALUE = 1e9
"""The largest ``|value|`` of one conversion: aggregates sum value and value²,
and beyond this a float sum over years of traffic would lose the small values."""
MAX_PLAN_DEPTH = 32
"""How deeply a command's plan may nest objects and lists: a plan uses 3, and an audience
rule in its JSON form up to 2 per level of and / or (10 levels, ``audience.MAX_DEPTH``)."""
MAX_PLAN_BYTES = 65_536
"""The largest plan a command may carry, as compact JSON."""

FlagKey = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=FLAG_KEY_PATTERN)]
"""A flag key: letters, digits and ``. _ : -``; safe in Redis keys and prompts."""

UnitId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
MessageId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Actor = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Reason = Annotated[str, StringConstraints(max_length=500)]
ShortText = Annotated[str, StringConstraints(max_length=200)]
FlagVersion = Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]
Stage = Annotated[StrictInt, Field(ge=0)]
Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
StrictFloatish = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A JSON number (integer or fraction), never a numeric string."""

# The flag platform's strategy parameters the controller writes beside the
# percent (Unleash: flexibleRollout), so an app's exposure helper can tell
# which flag version the SDK actually served.
FLAG_PARAMETER = "rcFlag"
"""Strategy parameter naming the controller's flag, for the app's exposure helper."""
VERSION_PARAMETER = "rcFlagVersion"
"""Strategy parameter with the flag version the strategy serves: exposures carry it."""
TARGETING_PARAMETER = "rcTargeting"
"""Strategy parameter (on one strategy of a targeted rollout): the rollout's audience and rings
as JSON (``targeting_json``), so the Unleash SDK's exposure helper can name each cohort."""
RING_PARAMETER = "rcRing"
"""Strategy parameter of a targeted rollout's strategy: the index of the ring it serves."""


def _exact_int(value: object) -> object:
    # Literal[1] alone would also take true and 1.0, which ingest refuses.
    if type(value) is not int:
        raise ValueError("must be the integer 1")
    return value


SchemaVersion = Annotated[Literal[1], BeforeValidator(_exact_int)]


def _rfc3339_only(value: object) -> object:
    # pydantic would also read numbers and digit-only strings as epoch seconds,
    # times without seconds, and a comma before the fraction; and it truncates
    # a fraction past microseconds where msgspec rounds it. Parsing with
    # msgspec, as ingest's fast decoder does, makes both read every timestamp
    # the same way.
    if isinstance(value, datetime):
        return value
    problem = "a timestamp must be epoch ms or RFC 3339, e.g. 2026-01-31T12:00:00Z"
    if not isinstance(value, str):
        raise ValueError(problem)  # noqa: TRY004 - pydantic reports ValueError, not TypeError
    try:
        return msgspec.convert(value, datetime)
    except msgspec.ValidationError as exc:
        raise ValueError(problem) from exc


Timestamp = (
    Annotated[StrictInt, Field(ge=0, le=MAX_EPOCH_MS)]
    | Annotated[AwareDatetime, BeforeValidator(_rfc3339_only)]
)


class Arm(StrEnum):
    """Which side of a flag a unit was served."""

    TREATMENT = "treatment"
    CONTROL = "control"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    v: SchemaVersion = Field(description="Schema version of this message.")
    id: MessageId = Field(description="Unique id of this message, used for deduplication.")
    ts: Timestamp = Field(
        description="When it happened: epoch milliseconds, or RFC 3339 with an offset."
    )


MessageBase = _Message
"""The common fields (``v``, ``id``, ``ts``), for wire models defined beside these."""


class _FlagEvent(_Message):
    id: MessageId = Field(
        description="Unique id of this event, for tracing. Events are not deduplicated by "
        "it: each record on the topic is counted once (its offset is stored with the "
        "counts), so a copy the app writes twice counts twice; the app client's "
        "idempotent producer keeps its own retries from writing copies, where the broker "
        "supports it."
    )
    flag: FlagKey
    unit: UnitId = Field(description="The unit (user, session, request) that was assigned.")
    arm: Arm
    flag_version: FlagVersion = Field(
        description="Version of the flag state the app acted on (from rollout.flag-state)."
    )
    cohort: Cohort | None = Field(
        default=None,
        description="With rings: where the unit stood in the stage's comparison, as the "
        "evaluation said; left out: compared. Carried and outside units are counted apart "
        "and compared by no gate.",
    )


class Exposure(_FlagEvent):
    """A unit was served an arm of a flag."""

    type: Literal["exposure"]


class RequestOutcome(_FlagEvent):
    """A request served under a flag finished: whether it failed and how long it took."""

    type: Literal["request"]
    error: StrictBool
    latency_ms: Annotated[StrictFloatish, Field(ge=0, le=MAX_LATENCY_MS)] | None = None


class Conversion(_FlagEvent):
    """A unit converted (purchase, signup, ...), optionally with a value."""

    type: Literal["conversion"]
    value: (
        Annotated[StrictFloatish, Field(ge=-MAX_CONVERSION_VALUE, le=MAX_CONVERSION_VALUE)] | None
    ) = None


Event = Annotated[Exposure | RequestOutcome | Conversion, Field(discriminator="type")]
"""Any inbound event on ``rollout.events``."""

EVENT_TYPES = frozenset({"exposure", "request", "conversion"})
event_adapter: TypeAdapter[Exposure | RequestOutcome | Conversion] = TypeAdapter(Event)


class CommandAction(StrEnum):
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    ABORT = "abort"
    KILL = "kill"
    APPROVE = "approve"


def _nesting(value: object, limit: int) -> int:
    """How deeply ``value`` nests dicts and lists (a scalar is 0), counting to ``limit + 1``."""
    depth, level = 0, [value]
    while depth <= limit:
        containers = [node for node in level if isinstance(node, dict | list)]
        if not containers:
            return depth
        depth += 1
        level = [
            child
            for node in containers
            for child in (node.values() if isinstance(node, dict) else node)
        ]
    return depth


def _bounded_plan(plan: dict[str, Any]) -> dict[str, Any]:
    # Bounded before anything walks or re-encodes it: orjson refuses to encode
    # more than 255 levels (signature checks encode the command) and the plan
    # parser recurses.
    if _nesting(plan, MAX_PLAN_DEPTH) > MAX_PLAN_DEPTH:
        raise ValueError(f"the plan nests deeper than {MAX_PLAN_DEPTH} levels")
    try:
        size = len(orjson.dumps(plan))
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"the plan is not JSON data: {exc}") from exc
    if size > MAX_PLAN_BYTES:
        raise ValueError(f"the plan is {size} bytes of JSON, more than {MAX_PLAN_BYTES}")
    return plan


BoundedPlan = Annotated[dict[str, Any], AfterValidator(_bounded_plan)]
"""A plan as data: JSON objects, at most :data:`MAX_PLAN_DEPTH` deep and
:data:`MAX_PLAN_BYTES` long; :func:`plan.parse_plan` checks its meaning."""


class Command(_Message):
    """An operator command on ``rollout.commands``, signed with Ed25519."""

    type: Literal["command"]
    action: CommandAction
    flag: FlagKey
    actor: Actor = Field(description="Who issued the command.")
    reason: Reason = ""
    plan: BoundedPlan | None = Field(
        default=None,
        description=f"The rollout plan; required with `start`. At most {MAX_PLAN_DEPTH} "
        f"levels deep and {MAX_PLAN_BYTES} bytes as compact JSON.",
    )
    to_end: bool = Field(default=False, description="With `promote`: jump to 100%.")
    at: Annotated[AwareDatetime, BeforeValidator(_rfc3339_only)] | None = Field(
        default=None,
        description="With `start`: when the rollout starts (RFC 3339 with an offset), at most "
        "366 days ahead; until then the start is scheduled, and `abort` cancels it.",
    )
    key_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None, description="Which operator key signed it; unsigned commands are rejected."
    )
    sig: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None,
        description="Base64 Ed25519 signature over the canonical command without `sig`: "
        "its JSON with keys sorted and no whitespace.",
    )


class FlagStatus(StrEnum):
    INACTIVE = "inactive"
    ROLLING_OUT = "rolling_out"
    PAUSED = "paused"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    KILLED = "killed"


class FlagState(_Message):
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
    key_id: Annotated[str, StringConstraints(pattern=KEY_ID_PATTERN)] | None = Field(
        default=None,
        description="Which controller key signed this state; none when the controller has "
        "no signing key.",
    )
    sig: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        default=None,
        description="Base64 Ed25519 signature over the state's signed form (docs/clients.md, "
        '"Verifying flag states"): apps configured with the controller\'s public keys '
        "hold no state without a valid one.",
    )


class Decision(_Message):
    """A state change, gate result, command outcome or advisor opinion, with evidence."""

    type: Literal["decision"]
    flag: FlagKey
    rollout_id: MessageId | None = None
    kind: Literal[
        "transition", "gate", "command", "monitor", "advisor", "backend", "segment", "app_key"
    ]
    action: ShortText
    outcome: Literal["applied", "held", "rejected", "recorded"]
    reason: Reason = ""
    stage: Stage | None = None
    phase_before: ShortText | None = None
    phase_after: ShortText | None = None
    command_id: MessageId | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)


class Alert(_Message):
    """Something a person should know: rollback, kill, SRM, stuck rollout, advisor outage."""

    type: Literal["alert"]
    flag: FlagKey | None = None
    rollout_id: MessageId | None = None
    severity: Literal["info", "warning", "critical"]
    kind: Literal[
        "rollback",
        "kill",
        "srm",
        "stuck",
        "no_traffic",
        "guardrail",
        "advisor_unavailable",
        "output_quarantined",
        "input_failed",
        "stale_flag",
        "backend_drift",
        "units_in_both_arms",
        "backend_unreachable",
        "backend_recovered",
        "operator_keys",
        "store_lost_writes",
    ]
    summary: Reason
    details: dict[str, Any] = Field(default_factory=dict)


class MonitorAlert(_Message):
    """An uptime monitor changed state; ``down`` kills the flags mapped to it."""

    type: Literal["monitor"]
    monitor: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    status: Literal["down", "up"]
    incident_id: MessageId | None = None


_OUTPUT: TypeAdapter[Decision | Alert] = TypeAdapter(
    Annotated[Decision | Alert, Field(discriminator="type")]
)


def decision_or_alert(value: object) -> Decision | Alert | None:
    """A decision or an alert read back from its topic or the gate history; None for
    anything else: another type, or a message that breaks the contract, skipped, never raised."""
    try:
        return _OUTPUT.validate_python(dict(value) if isinstance(value, Mapping) else value)
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
