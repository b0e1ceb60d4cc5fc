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
given its public keys, :func:`unsigned_decision` names the first decision that
is not as the controller signed it, so an edit the chain was rebuilt around, or a
decision forged on the topic, is caught too (commands carry their operator's
signature in ``data``).

:func:`check_export` reads a file's lines and names the first that fails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final, Literal

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from controller.core.trust import signing
from controller.core.trust.signing import StateVerifier

SEAL_TYPE: Final = "dev.rollout-controller.audit-seal"
SEAL_SOURCE: Final = "/rollout-controller/audit-export"
Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class SealData(BaseModel):
    """What the seal says of the export; its signature covers all of it but ``sig``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    since: AwareDatetime = Field(description="The span's first instant (`--since`), included.")
    until: AwareDatetime = Field(description="The span's end (`--until`), excluded.")
    types: list[str] = Field(description="The audit types exported (`--types`), in order.")
    events: Annotated[int, Field(ge=0)] = Field(description="How many events precede the seal.")
    start: Digest = Field(description="The digest of the start: the first event's `prevdigest`.")
    head: Digest = Field(description="The digest of the last event's line (`start` if none).")
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


@dataclass(frozen=True, slots=True)
class Checked:
    """An export whose chain holds: how many events, and who signed its seal (None: nobody)."""

    events: int
    signed_by: str | None


@dataclass(frozen=True, slots=True)
class Failed:
    """The first line (1-based) that fails, and why."""

    line: int
    reason: str


def check_export(lines: Sequence[bytes], keys: Mapping[str, Ed25519PublicKey]) -> Checked | Failed:
    """Whether ``lines`` are an export as written: each event chained to the one before, the
    first to the start, the last line a seal that counts them (and, signed, by a key of
    ``keys``, the public keys by key id). The first line that fails is named."""
    if not lines:
        return Failed(1, "the file is empty: no seal")
    sealed = _seal_of(lines[-1])
    if isinstance(sealed, str):
        return Failed(len(lines), sealed)
    data, raw = sealed
    events = lines[:-1]
    # A seal whose signature fails vouches for nothing, its count and head included.
    found = _signature(data, raw, keys, len(lines))
    if found is None and data.start != start_digest(data.since, data.until, data.types):
        found = Failed(len(lines), "the seal's start is not the digest of its span")
    return found or _chain_break(events, data) or Checked(len(events), data.key_id)


def _seal_of(line: bytes) -> tuple[SealData, dict[str, object]] | str:
    try:
        parsed = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "not JSON, and the last line must be the seal: the export is cut short"
    if not isinstance(parsed, dict) or parsed.get("type") != SEAL_TYPE:
        return "the last line is no seal: the export is cut short"
    try:
        sealed = AuditSeal.model_validate(parsed)
    except ValueError as error:
        return f"the seal is malformed: {str(error).splitlines()[0]}"
    if sealed.prevdigest != sealed.data.head:
        return "the seal's prevdigest is not its head"
    return sealed.data, parsed["data"]


DECISION_TYPE: Final = "dev.rollout-controller.decision"


def unsigned_decision(lines: Sequence[bytes], controller: StateVerifier) -> Failed | None:
    """The first event line (the seal excepted) whose decision is not signed by one of the
    controller's keys, with why: unsigned, an unknown key, or a signature that fails (the
    decision was edited after the controller signed it)."""
    for index, line in enumerate(lines):
        try:
            parsed = orjson.loads(line)
        except orjson.JSONDecodeError:
            return Failed(index + 1, "edited: not JSON")
        if not isinstance(parsed, dict) or parsed.get("type") != DECISION_TYPE:
            continue
        data = parsed.get("data")
        problem = "no decision" if not isinstance(data, dict) else controller.decision_problem(data)
        if problem is not None:
            return Failed(index + 1, f"the decision is not as the controller signed it: {problem}")
    return None


def _chain_break(events: Sequence[bytes], data: SealData) -> Failed | None:
    """The first line that breaks the chain from the start to the seal's head."""
    claims: list[str] = []
    for index, line in enumerate(events):
        claim = _prevdigest(line)
        if isinstance(claim, Failed):
            return Failed(index + 1, claim.reason)
        claims.append(claim)
    digests = [line_digest(line) for line in events]
    for index, claim in enumerate(claims):
        expected = digests[index - 1] if index else data.start
        if claim != expected:
            return _why(index, claims, expected, len(events) - data.events)
    head = digests[-1] if digests else data.start
    if head != data.head or len(events) != data.events:
        if len(events) < data.events:
            return Failed(len(events) + 1, "a line is missing before the seal (dropped)")
        if len(events) > data.events:
            return Failed(len(events), f"the seal counts {data.events} events, not more")
        return Failed(len(events), "edited: the seal's head is not this line's digest")
    return None


def _why(index: int, claims: Sequence[str], expected: str, extra: int) -> Failed:
    """The line a break before line ``index + 1`` most likely names, by what else the file
    holds: one moved, one missing, or the line before edited."""
    before = "the start" if index == 0 else f"line {index}"
    if extra > 0:
        return Failed(index + 1, f"not a line of the export: it does not follow {before} (added)")
    if extra < 0:
        return Failed(index + 1, f"a line is missing between {before} and this one (dropped)")
    follows = [n for n, claim in enumerate(claims) if claim == expected and n > index]
    if follows:
        return Failed(
            index + 1,
            f"out of order: line {follows[0] + 1}, not this one, follows {before} "
            "(moved or swapped)",
        )
    if index == 0:
        return Failed(1, "edited: its prevdigest is not the start's digest")
    return Failed(index, f"edited: line {index + 1} names another digest for this line")


def _prevdigest(line: bytes) -> str | Failed:
    try:
        parsed = orjson.loads(line)
    except orjson.JSONDecodeError:
        return Failed(0, "edited: not JSON")
    if not isinstance(parsed, dict):
        return Failed(0, "edited: not a JSON object")
    if parsed.get("type") == SEAL_TYPE:
        return Failed(0, "a seal before the last line (exports joined?)")
    claim = parsed.get("prevdigest")
    if not isinstance(claim, str):
        return Failed(0, "no prevdigest: not a line of a chained export (edited)")
    return claim


def _signature(
    data: SealData, raw: Mapping[str, object], keys: Mapping[str, Ed25519PublicKey], line: int
) -> Failed | None:
    if data.sig is None:
        return None
    key = keys.get(data.key_id or "")
    if key is None:
        return Failed(line, f"the seal is signed by key {data.key_id!r}, which is not known")
    if not signing.verify(raw, key):
        return Failed(line, f"bad signature: the seal is not signed by key {data.key_id!r}")
    return None
