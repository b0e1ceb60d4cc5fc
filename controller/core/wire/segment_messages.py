"""Segments on the wire: the operator's command, and the records apps receive.

* :class:`SegmentCommand` on the commands topic (key ``segment:<name>``),
  signed like every command: ``put`` with a ``rule``, or with one ``ids``
  part of an upload (an upload of ``n`` parts is ``n`` commands sharing
  ``upload``, ``count`` and ``sha256``; the last part to arrive completes
  it); ``delete``.
* :class:`SegmentRecord`: what a segment is now (its rule, or its size, hash
  and number of parts), on the compacted segments topic under the segment's
  name and in ``GET /v1/segments/{name}``; a deleted segment's record is a
  tombstone (no value) on the topic and a 404 over HTTP.
* :class:`SegmentPart`: one part of a version's id list, under
  ``<name>#<index>`` on the topic, inline in ``GET /v1/segments/{name}``.

With a signing key the controller signs each record's :func:`signed_bytes`;
parts need no signature, as the signed record carries the list's hash.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, model_validator

from controller.core.common import KEY_ID_PATTERN, Actor, AppliedDigest, MessageId
from controller.core.rules import (
    MAX_IDS,
    MAX_NAME_CHARS,
    MAX_PART_DATA_CHARS,
    MAX_PARTS,
    AudienceRule,
    rule_problem,
)
from controller.core.wire.signed import MessageBase, SignedCommand

SIGNED_FORM = "rollout-controller/segment/1"
"""The first element of a segment record's signed array."""

SegmentName = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=MAX_NAME_CHARS, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
    ),
]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
PartData = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PART_DATA_CHARS)]
Count = Annotated[StrictInt, Field(ge=0, le=MAX_IDS)]
Index = Annotated[StrictInt, Field(ge=0, lt=MAX_PARTS)]
Parts = Annotated[StrictInt, Field(ge=1, le=MAX_PARTS)]
SegmentVersion = Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]
KeyId = Annotated[str, StringConstraints(pattern=KEY_ID_PATTERN)]
Signature = Annotated[str, StringConstraints(min_length=1, max_length=256)]


def decision_key(name: str) -> str:
    """Where a segment's commands and decisions are keyed, beside flags': ``segment:<name>``."""
    return f"segment:{name}"


def part_key(name: str, index: int) -> str:
    """The topic key of one part of a segment's list."""
    return f"{name}#{index}"


class IdsPart(BaseModel):
    """One part of an id-list upload: the list's size and hash, and this part's ids."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    upload: MessageId = Field(description="Shared by every part of one upload.")
    part: Index
    parts: Parts = Field(description="How many parts the upload has.")
    count: Count = Field(description="How many ids the whole list holds.")
    sha256: Sha256 = Field(description="SHA-256 of the whole list: ids sorted, joined by \\n.")
    data: PartData = Field(description="This part: base64 of gzip of its ids joined by \\n.")

    @model_validator(mode="after")
    def _in_range(self) -> IdsPart:
        if self.part >= self.parts:
            raise ValueError(f"part {self.part} of {self.parts} (parts count from 0)")
        return self


class SegmentCommand(SignedCommand):
    """An operator's segment command on the commands topic, signed like every command."""

    type: Literal["segment_command"]
    action: Literal["put", "delete"]
    segment: SegmentName
    actor: Actor  # as published: with no description
    rule: AudienceRule | None = Field(default=None, description="With `put`: the segment's rule.")
    ids: IdsPart | None = Field(default=None, description="With `put`: one part of an id list.")
    applied: AppliedDigest | None = Field(
        default=None,
        description="With `put`, sent by `rolloutctl apply`: SHA-256 of the desired segment, "
        "kept with the segment (served by `GET /v1/segments`, never on the topic).",
    )
    key_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    sig: Signature | None = None

    actor_follows: ClassVar[str] = "segment"

    @model_validator(mode="after")
    def _one_body(self) -> SegmentCommand:
        given = (self.rule is not None) + (self.ids is not None)
        if self.action == "put" and given != 1:
            raise ValueError("put takes a rule or ids, one of them")
        if self.action == "delete" and given:
            raise ValueError("delete takes neither a rule nor ids")
        problem = rule_problem(self.rule) if self.rule is not None else None
        if problem:
            raise ValueError(problem)
        return self


class SegmentRecord(MessageBase):
    """A segment as it is now: on the segments topic under its name, and over HTTP."""

    type: Literal["segment"]
    name: SegmentName
    version: SegmentVersion = Field(description="Bumped by every put.")
    rule: AudienceRule | None = Field(default=None, description="A rule segment's rule.")
    count: Count | None = Field(default=None, description="An id list's size.")
    sha256: Sha256 | None = Field(default=None, description="The id list's hash (see parts).")
    parts: Parts | None = Field(default=None, description="How many parts the id list has.")
    key_id: KeyId | None = None
    sig: Signature | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> SegmentRecord:
        listed = (self.count, self.sha256, self.parts)
        if (self.rule is None) == (None in listed) or (None in listed and any(listed)):
            raise ValueError("a segment has a rule, or count, sha256 and parts")
        return self


class SegmentPart(MessageBase):
    """One part of a segment version's id list, on the segments topic under ``<name>#<index>``."""

    type: Literal["segment_part"]
    segment: SegmentName
    version: SegmentVersion
    index: Index
    data: PartData


def signed_bytes(record: dict[str, Any], key_id: str) -> bytes:
    """The bytes the controller signs for a segment record's fields, with ``key_id``::

    [SIGNED_FORM, key_id, name, version, rule (compact JSON text) or null,
     count, sha256, parts]
    """
    rule = record.get("rule")
    rule_text = None if rule is None else orjson.dumps(rule, option=orjson.OPT_SORT_KEYS).decode()
    fields = [record["name"], record["version"], rule_text]
    fields += [record.get("count"), record.get("sha256"), record.get("parts")]
    return orjson.dumps([SIGNED_FORM, key_id, *fields])


SEGMENT_MODELS: dict[str, Any] = {
    "segment-command": SegmentCommand,
    "segment": SegmentRecord,
    "segment-part": SegmentPart,
}
"""The segment contracts by the file stem of their JSON Schema in ``schemas/``."""
