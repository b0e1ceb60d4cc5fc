"""Monitor webhooks: turn a monitoring system's payload into a monitor signal.

Pure: the HTTP server hands in the decoded JSON body and gets back either a
:class:`MonitorSignal` (down or up, with the incident it belongs to), ``None``
for a payload that is valid but means nothing here (an incident was
acknowledged), or a :class:`PayloadError` naming what is wrong.

Two shapes are accepted:

* **Better Uptime** (Better Stack) incident webhooks::

      {"event": "started" | "acknowledged" | "resolved" | "reopened",
       "data": {"id": "<incident id>", "type": "incident",
                "attributes": {"name": "...", "cause": "...", ...},
                "relationships": {"monitor": {"data": {"id": "<monitor id>"}}}}}

  ``started`` means down and ``resolved`` means up. The monitor is named by
  its Better Uptime id, so ``engine.monitors`` maps that id to flags.

  ``reopened`` means down again: a resolved incident came back, so it is a new
  signal, not a redelivery of its ``started``, and it gets its own message id.
  The documented payload carries no reopen counter, only the incident's
  timestamps, so a reopen is told apart by the first of ``reopened_at``,
  ``updated_at`` or ``resolved_at`` (the resolution it reopens) that the payload
  carries, else by the delivery id (``X-Request-Id``, or one per delivery). Where
  it cannot be told, a redelivery counts again: a second kill of a killed flag
  changes nothing, while a reopen taken for a duplicate would lose a kill.

* **Generic**: ``{"monitor": "...", "status": "down" | "up", "incident_id": "...",
  "action": "kill" | "hold"}``; ``incident_id`` is optional (without it every delivery
  counts once), and ``action`` too: ``hold`` pauses the mapped flags' running rollouts
  instead of killing them (a deploy tool aborted a deploy of their service).

Incident and monitor ids may come as strings or integers, and senders are not
consistent about it: ``7``, ``"7"`` and ``" 7 "`` are one incident, so a
redelivery in another form is still recognised as a redelivery.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from controller.core.common import ControllerError
from controller.core.wire import JsonObject, summarize

MonitorStatus = Literal["down", "up"]
MonitorAction = Literal["kill", "hold"]
M = TypeVar("M", bound="BaseModel")
MAX_ID_CHARS = 128
_ID = Field(min_length=1, max_length=MAX_ID_CHARS)


def _external_id(value: object) -> str:
    """One text form of an id a sender may write as a string or an integer."""
    # bool is an int to Python, but true is no incident id
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    raise ValueError("must be a string or an integer")


ExternalId = Annotated[str, BeforeValidator(_external_id)]
BoundedId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS), BeforeValidator(_external_id)
]


class PayloadError(ControllerError, ValueError):
    """The payload is not a webhook this endpoint understands; the text says why."""


class UnmappedMonitor(ControllerError):
    """No flag is mapped to the signal's monitor: it would kill nothing, so it is refused
    (a misspelt id would otherwise fail silently when it matters)."""

    def __init__(self, monitor: str) -> None:
        super().__init__(
            f"no flag is mapped to monitor {monitor!r}: map it in engine.monitors "
            "(or check the monitor id the sender uses)"
        )


@dataclass(frozen=True, slots=True)
class MonitorSignal:
    """A monitor went down or came back, as one incident."""

    source: str
    monitor: str
    status: MonitorStatus
    incident_id: str
    summary: str = ""
    occurrence: str = ""
    """What tells a reopened incident's down from its first one ("" for the first)."""
    action: MonitorAction = "kill"
    """What a ``down`` does: kill the mapped flags, or hold them."""

    @property
    def message_id(self) -> str:
        """Stable id of this signal: a redelivered webhook gets the same one (and a kill
        after a hold of the same incident another one, so it is not taken for a repeat)."""
        key = f"{self.source}\0{self.monitor}\0{self.incident_id}\0{self.status}"
        if self.occurrence:
            key += f"\0{self.occurrence}"
        if self.action != "kill":
            key += f"\0{self.action}"
        return f"{self.source}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"


@dataclass(frozen=True, slots=True)
class Intake:
    """What became of a signal: whether it was new, and the flags mapped to it."""

    accepted: bool
    flags: list[str]


class _Lenient(BaseModel):
    # Monitoring systems add fields over time; only the ones read here are checked.
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Ref(_Lenient):
    id: ExternalId


class _MonitorLink(_Lenient):
    data: _Ref


class _Relationships(_Lenient):
    monitor: _MonitorLink


class _Attributes(_Lenient):
    name: str = ""
    cause: str | None = None
    # Read only to tell reopens apart, and of any type: a sender's odd timestamp
    # must not turn a started incident into a refusal.
    reopened_at: object = None
    updated_at: object = None
    resolved_at: object = None


class _Incident(_Lenient):
    id: ExternalId
    type: Literal["incident"]
    attributes: _Attributes = Field(default_factory=_Attributes)
    relationships: _Relationships


class _BetterUptime(_Lenient):
    event: Literal["started", "acknowledged", "resolved", "reopened"]
    data: _Incident


class _Generic(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    monitor: str = _ID
    status: MonitorStatus
    incident_id: BoundedId | None = None
    summary: str = Field(default="", max_length=500)
    action: MonitorAction = "kill"


_BETTER_UPTIME_STATUS: dict[str, MonitorStatus] = {
    "started": "down",
    "reopened": "down",
    "resolved": "up",
}


def parse_betteruptime(payload: object, *, delivery_id: str = "") -> MonitorSignal | None:
    """The signal in a Better Uptime incident webhook; None for ``acknowledged``.

    ``delivery_id`` tells a ``reopened`` incident apart when its payload
    carries no timestamp that does (see the module docstring).
    """
    hook = _validated(_BetterUptime, payload)
    status = _BETTER_UPTIME_STATUS.get(hook.event)
    if status is None:
        return None
    incident = hook.data
    attrs = incident.attributes
    summary = f"{attrs.name}: {attrs.cause}" if attrs.cause else attrs.name
    return MonitorSignal(
        source="betteruptime",
        monitor=_bounded(incident.relationships.monitor.data.id, "monitor id"),
        status=status,
        incident_id=_bounded(incident.id, "incident id"),
        summary=summary[:500],
        occurrence=_reopen(attrs, delivery_id) if hook.event == "reopened" else "",
    )


def _reopen(attrs: _Attributes, delivery_id: str) -> str:
    """What names this reopen: the first timestamp that changes with each one."""
    for name in ("reopened_at", "updated_at", "resolved_at"):
        value = getattr(attrs, name)
        if isinstance(value, str) and value.strip():
            # bounded: a digest of anything longer, as for a delivery id
            return f"reopened:{name}:{bounded_id(value)}"
    return f"reopened:delivery:{bounded_id(delivery_id)}"


def parse_generic(payload: object, *, delivery_id: str) -> MonitorSignal:
    """The signal in a generic monitor webhook.

    ``delivery_id`` stands in for a missing ``incident_id``: a payload without
    one is its own incident. It is bounded here (see :func:`bounded_id`), so
    a header of any length can be passed as it came.
    """
    hook = _validated(_Generic, payload)
    return MonitorSignal(
        source="monitor",
        monitor=hook.monitor,
        status=hook.status,
        incident_id=hook.incident_id or bounded_id(delivery_id),
        summary=hook.summary,
        action=hook.action,
    )


def _validated(model: type[M], payload: object) -> M:
    if not isinstance(payload, dict):
        raise PayloadError("the body must be a JSON object")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise PayloadError(summarize(exc)) from exc


def _bounded(value: str, what: str) -> str:
    if not 1 <= len(value) <= MAX_ID_CHARS:
        raise PayloadError(f"{what} must be 1 to {MAX_ID_CHARS} characters")
    return value


def bounded_id(value: str) -> str:
    """A sender's id (an ``X-Request-Id``, say) in a form that fits a contract id.

    A short printable ASCII id is kept as sent, so it can be traced in the
    sender's logs; anything longer or stranger becomes a digest of it, so it
    stays bounded and a redelivery with the same id still maps to the same one.
    """
    value = value.strip()
    if 1 <= len(value) <= MAX_ID_CHARS and value.isascii() and value.isprintable():
        return value
    digest = hashlib.sha256(value.encode("utf-8", "backslashreplace")).hexdigest()
    return f"sha256-{digest[:40]}"


def signal_fields(signal: MonitorSignal) -> JsonObject:
    """The fields of the ``monitor`` contract message for ``signal`` (without ``ts``)."""
    fields: JsonObject = {
        "type": "monitor",
        "v": 1,
        "id": signal.message_id,
        "monitor": signal.monitor,
        "status": signal.status,
        "incident_id": signal.incident_id,
    }
    # a kill's message stays as it always was
    return fields if signal.action == "kill" else fields | {"action": signal.action}
