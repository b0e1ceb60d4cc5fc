"""Audit records: each published record as a CloudEvents 1.0 event, in time order, once.

``rolloutctl audit export`` reads the controller's topics between two instants
and writes one :class:`AuditEvent` per record, as JSON Lines. This module is
the pure part: what a record becomes (:func:`audit_event`), the order of the
export (:func:`export_order`) and which copies are dropped (:class:`Dedup`).

* ``data`` is the record's JSON object as published, byte for byte in meaning
  (the evidence of a decision, the signer of a command), never re-modelled.
* ``id`` is the record's own message ``id``: the controller's outbox may
  publish a decision again after a crash, under the same id, and consumers
  deduplicate on it (docs/architecture.md, "The engine's outbox"). A record
  without one is named by its coordinates, ``<topic>/<partition>/<offset>``,
  which are as stable as the log. Re-exporting a span yields the same ids.
* ``time`` is when the record was written to its topic (the Kafka timestamp),
  which the export's span and order are read by; the record's own ``ts`` is
  in ``data``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from controller.core.trust import audit_chain
from controller.core.wire import JsonObject

AUDIT_TYPE_PREFIX = "dev.rollout-controller."
AUDIT_TOPICS: dict[str, str] = {
    "decision": "decisions",
    "command": "commands",
    "alert": "alerts",
    "monitor": "monitors",
    "segment": "segments",
}
"""Each audit type by the topic (its key in ``topics.*``) its records are read from."""

MAX_AUDIT_RECORD_BYTES = 1_048_576
"""A record longer than this is refused (the largest message the controller publishes is
``kafka.max_message_bytes``, 1 MiB by default)."""

_DIGITS = bytes.maketrans(b"0123456789", b"9999999999")
_LONG_DIGITS = b"9" * 19
"""A run this long may be an integer past 64 bits (translated, then found: a regular
expression costs more than parsing the record)."""

AuditType = Literal["decision", "command", "alert", "monitor", "segment"]
HolderFrom = Literal["operator_keys", "settings"]


class AuditEvent(BaseModel):
    """One published record as a CloudEvents 1.0 event: a line of an audit export."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = Field(description="CloudEvents version.")
    id: Annotated[str, StringConstraints(min_length=1, max_length=512)] = Field(
        description="The record's message `id`; `<id>@<topic>/<partition>/<offset>` for a "
        "record that reuses another's id with other content; `<topic>/<partition>/<offset>` "
        "for one without an id. Stable across exports: deduplicate on (`source`, `id`)."
    )
    source: Annotated[str, StringConstraints(min_length=1, max_length=512)] = Field(
        description="Where the record was read: `/rollout-controller/topics/<topic name>`."
    )
    type: Annotated[
        str,
        StringConstraints(
            pattern=r"^dev\.rollout-controller\.(decision|command|alert|monitor|segment)$"
        ),
    ] = Field(
        description="What the record is, by its topic: `decision` (rollout.decisions, "
        "approvals, segment and key changes included), `command` (rollout.commands, signed), "
        "`alert` (rollout.alerts), `monitor` (rollout.monitors), `segment` (rollout.segments)."
    )
    time: AwareDatetime = Field(
        description="When the record was written to its topic (its Kafka timestamp), RFC 3339."
    )
    subject: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = Field(
        default=None,
        description="The flag the record is about (`flag`), else the record's Kafka key.",
    )
    datacontenttype: Literal["application/json"] = "application/json"
    data: JsonObject = Field(
        description="The record's JSON object as published: it validates against the "
        "schema of its type (decision.schema.json, command.schema.json and the other "
        "commands', alert.schema.json, monitor.schema.json, segment.schema.json or "
        "segment-part.schema.json); a command is as its sender wrote it, valid or not."
    )
    kafkatopic: Annotated[str, StringConstraints(min_length=1, max_length=249)] = Field(
        description="Extension attribute: the topic the record was read from."
    )
    kafkapartition: Annotated[int, Field(ge=0)] = Field(
        description="Extension attribute: its partition."
    )
    kafkaoffset: Annotated[int, Field(ge=0)] = Field(
        description="Extension attribute: its offset in that partition."
    )
    signerholder: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        default=None,
        description="Extension attribute of a command: the person who holds the key that "
        "signed it (`data.key_id`), by the operator keys; absent where the key is not known.",
    )
    signerholderfrom: HolderFrom | None = Field(
        default=None,
        description="Extension attribute: where `signerholder` was read: `operator_keys` "
        "(the last `operator_keys` alert before the command, the keys as of its time) or "
        "`settings` (the keys of the configuration the export was run with, today's keys).",
    )
    prevdigest: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        default=None,
        description="Extension attribute: SHA-256 (hex) of the line before this one as "
        "written; the first event's names the export's start (docs/audit.md). Every event "
        "of an export carries it.",
    )


@dataclass(frozen=True, slots=True)
class PublishedRecord:
    """A record read from a topic, with what the export orders it by."""

    kind: AuditType
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class RecordRefused:
    """A record that cannot be exported, and why (told on stderr, never the export's end)."""

    record: PublishedRecord
    reason: str

    @property
    def tombstone(self) -> bool:
        """A compacted topic's deletion (no value): nothing to tell, its decision says it."""
        return self.record.value is None and self.record.kind == "segment"

    @property
    def where(self) -> str:
        """The record's coordinates, ``<topic>/<partition>/<offset>``."""
        return _coordinates(self.record)


def export_order(record: PublishedRecord) -> tuple[int, str, int, int]:
    """The export's order: by timestamp, ties by topic, partition and offset."""
    return (record.timestamp_ms, record.topic, record.partition, record.offset)


def audit_event(record: PublishedRecord) -> AuditEvent | RecordRefused:
    """The record as an audit event, or why it cannot be one (empty, too long, not JSON,
    not an object)."""
    value = record.value or b""
    if not value:
        return RecordRefused(record, "empty record")
    if len(value) > MAX_AUDIT_RECORD_BYTES:
        return RecordRefused(record, f"record of {len(value)} bytes, over {MAX_AUDIT_RECORD_BYTES}")
    try:
        data = orjson.loads(value)
        if _LONG_DIGITS in value.translate(_DIGITS):
            # orjson reads an integer past 64 bits as a float; the record keeps its digits.
            data = json.loads(value)
    except (orjson.JSONDecodeError, RecursionError) as error:
        return RecordRefused(record, f"not JSON: {str(error)[:200]}")
    if not isinstance(data, dict):
        return RecordRefused(record, f"not a JSON object but {type(data).__name__}")
    return _event(record, data)


def _event(record: PublishedRecord, data: JsonObject) -> AuditEvent | RecordRefused:
    own_id = data.get("id")
    try:
        time = datetime.fromtimestamp(record.timestamp_ms / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return RecordRefused(record, f"timestamp {record.timestamp_ms} out of range")
    fields = {
        "specversion": "1.0",
        "id": own_id if _fits(own_id) else _coordinates(record),
        "source": f"/rollout-controller/topics/{record.topic}",
        "type": f"{AUDIT_TYPE_PREFIX}{record.kind}",
        "time": time,
        "subject": _subject(record, data),
        "data": {},
        "kafkatopic": record.topic,
        "kafkapartition": record.partition,
        "kafkaoffset": record.offset,
    }
    try:
        envelope = AuditEvent.model_validate(fields)
    except ValueError as error:
        return RecordRefused(record, f"cannot be exported: {str(error).splitlines()[0]}")
    # The parser made ``data`` of JSON values only: validating them again costs more
    # than the rest of the record.
    return envelope.model_copy(update={"data": data})


def _fits(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 128


def _subject(record: PublishedRecord, data: JsonObject) -> str | None:
    flag = data.get("flag")
    if isinstance(flag, str) and 0 < len(flag) <= 512:
        return flag
    key = (record.key or b"").decode("utf-8", errors="replace")
    return key[:512] or None


def _coordinates(record: PublishedRecord) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


@dataclass(slots=True)
class Dedup:
    """Which events were exported, so that a record published twice is exported once.

    A second record with an exported (source, id) and the same content is a copy (the
    outbox published it again) and is dropped; one with the same id and other content is
    another record and is kept, its id made unique by its coordinates.
    """

    _seen: dict[tuple[str, str], set[bytes]] = field(default_factory=dict)
    copies: int = 0
    reused_ids: int = 0

    def admit(self, event: AuditEvent) -> AuditEvent | None:
        """The event to export, or None for a copy of one exported already."""
        digest = _digest(event.data)
        seen = self._seen.setdefault((event.source, event.id), set())
        if digest in seen:
            self.copies += 1
            return None
        seen.add(digest)
        if len(seen) == 1:
            return event
        self.reused_ids += 1
        where = f"{event.kafkatopic}/{event.kafkapartition}/{event.kafkaoffset}"
        return event.model_copy(update={"id": f"{event.id}@{where}"})


def _digest(data: JsonObject) -> bytes:
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).digest()


def audit_line(event: AuditEvent) -> str:
    """The event as one line of JSON (no newline), ``time`` in RFC 3339 with ``Z``."""
    line: str = event.model_dump_json(exclude_none=True)
    return line


@dataclass(frozen=True, slots=True)
class KeyHolders:
    """Who holds each operator key, as of a time: from ``operator_keys`` alerts, else today.

    Each ``operator_keys`` alert (published when the keys are reloaded) maps every key to
    its holder as of that alert; ``current`` is the keys' holders in the settings the
    export runs with. A command's holder is the one the last alert at or before it names,
    else the current one; which of the two is said with it.
    """

    current: Mapping[str, str]
    history: Sequence[tuple[int, Mapping[str, str]]] = ()
    """(timestamp in ms, holders by key id) of each ``operator_keys`` alert, oldest first."""

    def holder_at(self, key_id: str, at_ms: int) -> tuple[str, HolderFrom] | None:
        """The holder of ``key_id`` at ``at_ms`` and where it was read, or None: unknown."""
        index = bisect.bisect_right([t for t, _ in self.history], at_ms)
        if index and (holder := self.history[index - 1][1].get(key_id)):
            return holder, "operator_keys"
        if holder := self.current.get(key_id):
            return holder, "settings"
        return None


def holders_of_alert(record: PublishedRecord) -> tuple[int, dict[str, str]] | None:
    """The (timestamp, holders by key id) an ``operator_keys`` alert names, else None."""
    event = audit_event(record)
    if not isinstance(event, AuditEvent) or event.data.get("kind") != "operator_keys":
        return None
    details = event.data.get("details")
    holders = details.get("holders") if isinstance(details, dict) else None
    if not isinstance(holders, dict):
        return None
    named = {
        k: v
        for k, v in holders.items()
        if isinstance(v, str) and 0 < len(v) <= 128 and 0 < len(k) <= 128
    }
    return record.timestamp_ms, named


def with_holder(event: AuditEvent, holders: KeyHolders) -> AuditEvent:
    """A command's event with the holder of the key that signed it; others as they are."""
    key_id = event.data.get("key_id")
    if not event.type.endswith(".command") or not isinstance(key_id, str):
        return event
    at_ms = int(event.time.timestamp() * 1000)
    found = holders.holder_at(key_id, at_ms)
    if found is None:
        return event
    return event.model_copy(update={"signerholder": found[0], "signerholderfrom": found[1]})


AUDIT_MODELS: dict[str, type[BaseModel]] = {
    "audit-event": AuditEvent,
    "audit-seal": audit_chain.AuditSeal,
}
"""The audit export's lines by the file stem of their JSON Schema in ``schemas/``."""
