"""The fields of the wire contracts: bounded strings and numbers, timestamps, plan bounds,
the kinds of alert.

Every number from outside is finite and bounded (:data:`MAX_LATENCY_MS`,
:data:`MAX_CONVERSION_VALUE`, :data:`MAX_EPOCH_MS`), every string has a
length, and a command's plan is bounded in depth and size
(:data:`BoundedPlan`), so no single message can overflow an aggregate or
exhaust a parser. The messages that use them are :mod:`controller.core.wire.messages`'.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    StrictInt,
    StringConstraints,
)

SCHEMA_VERSION = 1
PLAIN_FLAG_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
"""A flag's own key, as an operator names it in a command."""
ENVIRONMENT_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
"""An environment's name (``staging``): lower case, at most 32 characters."""
FLAG_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}(?:@[a-z][a-z0-9_-]{0,31})?$"
"""A flag key as stored and published: the flag's own key, and ``@`` and the environment
outside the default one (``checkout@staging``; :mod:`controller.core.common.scopes`)."""
KEY_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
"""A signing key's id, as flag states carry it."""
CONVERSION_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$"
"""A named conversion (``client.track("checkout_completed")``): safe in Redis fields and PromQL."""
MAX_EPOCH_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last instant a timestamp may name."""
MAX_LATENCY_MS = 86_400_000
"""A day: a request latency beyond it is an input error, not a measurement."""
MAX_FAILURE_CHARS = 256
"""The longest failure name an event may carry (its fingerprint: type and top frame, or status
class and route); the controller keeps at most 120 characters of each part."""
MAX_FAILURE_EXAMPLE_CHARS = 2_048
"""The longest example message an event may carry; the controller keeps 160 characters."""
MAX_CONVERSION_VALUE = 1e9
"""The largest ``|value|`` of one conversion: aggregates sum value and value²,
and beyond this a float sum over years of traffic would lose the small values."""
MAX_PLAN_DEPTH = 32
"""How deeply a command's plan may nest objects and lists: a plan uses 3, and an audience
rule in its JSON form up to 2 per level of and / or (10 levels, ``audience.MAX_DEPTH``)."""
MAX_PLAN_BYTES = 65_536
"""The largest plan a command may carry, as compact JSON."""

MAX_FLAG_KEY = 128 + 1 + 32
FlagKey = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_FLAG_KEY, pattern=FLAG_KEY_PATTERN)
]
"""A flag key: letters, digits and ``. _ : -``, then ``@`` and its environment outside the
default one; safe in Redis keys, URL paths and prompts."""
PlainFlagKey = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=PLAIN_FLAG_KEY_PATTERN)
]
"""A flag's own key (at most 128 characters), without an environment."""
EnvironmentName = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=ENVIRONMENT_PATTERN)
]
"""An environment's name: a lower-case letter, then up to 31 letters, digits, ``-``, ``_``."""

ConversionName = Annotated[str, StringConstraints(pattern=CONVERSION_NAME_PATTERN)]
"""The name of a tracked conversion; a plan's guardrail may read one name alone."""

FailureName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_FAILURE_CHARS)]
"""What failed, as an event names it: a crash's, an exception's or a failed request's."""
FailureExample = Annotated[str, StringConstraints(max_length=MAX_FAILURE_EXAMPLE_CHARS)]
"""One message of a crash's or an exception's failure."""

UnitId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
MessageId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Actor = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Reason = Annotated[str, StringConstraints(max_length=500)]
AppliedDigest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
"""SHA-256 (hex) of the desired object ``rolloutctl apply`` sent: kept with what it made."""
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


AlertKind = Literal[
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
    "monitor_hold",
    "backend_unreachable",
    "backend_recovered",
    "operator_keys",
    "store_lost_writes",
    "store_lost",
    "events_log_gap",
    "topics_recreated",
    "metric_source_unavailable",
    "metric_source_recovered",
    "pipeline_stopped",
    "late_regression",
    "evidence_behind",
]
"""What an alert is about (docs/alerts.md names each, with when it is raised)."""


SchemaVersion = Annotated[Literal[1], BeforeValidator(_exact_int)]


def rfc3339_only(value: object) -> object:
    """A timestamp given as text, read as RFC 3339 the way ingest reads it (msgspec)."""
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
    | Annotated[AwareDatetime, BeforeValidator(rfc3339_only)]
)


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
