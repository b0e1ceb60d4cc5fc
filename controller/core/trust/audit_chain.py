"""The audit export's chain and seal: a file a reader can check end to end.

Each event of an export carries ``prevdigest``, the SHA-256 (hex) of the line
before it as written (its UTF-8 bytes, without the newline), so a line edited,
dropped or moved breaks the chain where it was. The first event's
``prevdigest`` is the digest of the export's start (:func:`start_digest`: the
span and the types asked for). A last line, the seal (:class:`AuditSeal`),
repeats the start, counts the events and names the last event's digest
(``head``); signed with an operator key, it vouches for every line before it:
a reader who trusts that key's public half needs nothing else.

What the chain proves: the file is the export as it was written, whole and in
its order (and, signed, who wrote it). What it does not: that each record is
what the controller published. A controller with a signing key signs each
decision it publishes (:func:`~controller.core.trust.signing.decision_bytes`);
given its public keys, the check names the first decision that is not as the
controller signed it, so an edit the chain was rebuilt around, or a decision
forged on the topic, is caught too (commands carry their operator's signature in
``data``).

:mod:`controller.core.trust.audit_check` reads a file's lines and names the first
that fails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final, Literal

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from controller.core.trust import signing

SEAL_TYPE: Final = "dev.rollout-controller.audit-seal"
SEAL_SOURCE: Final = "/rollout-controller/audit-export"
Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class ReadOffsets(BaseModel):
    """The offsets of one partition the export read over: ``begin <= offset < end`` (equal:
    the span holds no record there, and the log still holds where it would be)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: Annotated[str, StringConstraints(min_length=1, max_length=249)]
    partition: Annotated[int, Field(ge=0)]
    begin: Annotated[int, Field(ge=0)] = Field(description="The first offset read over.")
    end: Annotated[int, Field(ge=0)] = Field(description="The offset after the last read over.")

    def holds(self, offset: int) -> bool:
        return self.begin <= offset < self.end


class SealData(BaseModel):
    """What the seal says of the export; its signature covers all of it but ``sig``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    since: AwareDatetime = Field(description="The span's first instant (`--since`), included.")
    until: AwareDatetime = Field(description="The span's end (`--until`), excluded.")
    types: list[str] = Field(description="The audit types exported (`--types`), in order.")
    events: Annotated[int, Field(ge=0)] = Field(description="How many events precede the seal.")
    start: Digest = Field(description="The digest of the start: the first event's `prevdigest`.")
    head: Digest = Field(description="The digest of the last event's line (`start` if none).")
    read: list[ReadOffsets] | None = Field(
        default=None,
        description="Each partition of the topics exported and the offsets it was read over, "
        "so an empty span is told from one not read; absent in exports written before.",
    )
    key_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None, description="The operator key that signed the seal; absent: unsigned."
    )
    sig: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None,
        description="Base64 Ed25519 signature over this object without `sig`: its JSON with "
        "keys sorted and no whitespace.",
    )


class AuditSeal(BaseModel):
    """The last line of an audit export, a CloudEvents 1.0 event: the chain's end, signed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = Field(description="CloudEvents version.")
    id: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        description="`seal-` and the chain's head digest."
    )
    source: Literal["/rollout-controller/audit-export"] = Field(description="The export.")
    type: Literal["dev.rollout-controller.audit-seal"] = Field(description="A seal.")
    time: AwareDatetime = Field(description="When the export was written.")
    datacontenttype: Literal["application/json"] = "application/json"
    data: SealData = Field(description="The span, the count of events and the chain's ends.")
    prevdigest: Digest = Field(
        description="Extension attribute: the digest of the line before (`data.head`)."
    )


def line_digest(line: bytes) -> str:
    """The digest the next line names: SHA-256 of the line as written, hex."""
    return hashlib.sha256(line).hexdigest()


def start_digest(since: datetime, until: datetime, types: Sequence[str]) -> str:
    """The digest the first event names: of the span and types, as canonical JSON."""
    start = {"since": since.isoformat(), "until": until.isoformat(), "types": list(types)}
    return line_digest(orjson.dumps(start, option=orjson.OPT_SORT_KEYS))


@dataclass(frozen=True, slots=True)
class Signer:
    """An operator key the seal is signed with."""

    key_id: str
    key: Ed25519PrivateKey


def seal(
    start: SealData, *, events: int, head: str, at: datetime, signer: Signer | None
) -> AuditSeal:
    """The seal of ``events`` chained from ``start`` to ``head``, signed when a key is given."""
    data = start.model_copy(update={"events": events, "head": head})
    if signer is not None:
        unsigned = data.model_copy(update={"key_id": signer.key_id})
        sig = signing.sign(unsigned.model_dump(mode="json", exclude_none=True), signer.key)
        data = unsigned.model_copy(update={"sig": sig})
    return AuditSeal(
        specversion="1.0",
        id=f"seal-{head}",
        source=SEAL_SOURCE,
        type=SEAL_TYPE,
        time=at,
        data=data,
        prevdigest=head,
    )


def seal_line(sealed: AuditSeal) -> str:
    """The seal as its line (no newline)."""
    line: str = sealed.model_dump_json(exclude_none=True)
    return line


DECISION_TYPE: Final = "dev.rollout-controller.decision"
