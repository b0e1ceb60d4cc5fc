"""Checking an audit export: its lines read once, in order, and the first that fails named.

The export is read through :class:`ExportLines`: how many lines it has, its
last line (the seal, read first: it names the start, the count and the head),
and its events in order, read again only where a break needs to look ahead
(which later line follows the one before the break). One line is held at a
time, so a file of any length is checked in the memory of its longest line;
a line longer than the reader's bound arrives as :class:`Oversized` and fails
where it is.

Each event is checked, in the file's order, for what every check given asks
of it: the chain (its ``prevdigest`` is the line before's digest), its place
(read within the offsets the seal names, where it names them), and, given the
controller's keys, its decision's signature. The first line that fails
any is named; a line the chain shows edited is named when the next line
is read, so a decision that fails its signature is named once the next line
shows no earlier line broken. The seal is checked first where it vouches for
the rest (its signature, its start), and last where only its absence is wrong:
given operator keys, an unsigned seal fails, at the seal, if no line before it
does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from controller.core.trust import signing
from controller.core.trust.audit_chain import (
    DECISION_TYPE,
    SEAL_TYPE,
    AuditSeal,
    SealData,
    line_digest,
    start_digest,
)
from controller.core.trust.signing import StateVerifier


@dataclass(frozen=True, slots=True)
class Oversized:
    """A line longer than the reader reads: at least ``size`` bytes, over its ``limit``."""

    size: int
    limit: int


Line = bytes | Oversized


class ExportLines(Protocol):
    """An export as the check reads it."""

    @property
    def count(self) -> int:
        """How many lines the file holds, the seal's included."""

    @property
    def last(self) -> Line | None:
        """The last line (the seal's), or None for an empty file."""

    def events(self, start: int = 0) -> Iterator[Line]:
        """Each line before the last, in order, from the ``start``-th (0-based)."""


class LinesInMemory:
    """An export's lines already read (tests, and the export checking what it wrote)."""

    def __init__(self, lines: Sequence[bytes]) -> None:
        self._lines = lines

    @property
    def count(self) -> int:
        return len(self._lines)

    @property
    def last(self) -> Line | None:
        return self._lines[-1] if self._lines else None

    def events(self, start: int = 0) -> Iterator[Line]:
        yield from self._lines[start:-1]


@dataclass(frozen=True, slots=True)
class Trust:
    """What the check is given: operator keys for the seal, the controller's for decisions."""

    keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)
    """The operator public keys by key id: given any, an unsigned seal fails."""
    controller: StateVerifier | None = None
    """The controller's public keys: given them, every decision must be signed by one."""
    require_signature: bool = False
    """An unsigned seal fails even where no operator key is given."""

    @property
    def seal_required(self) -> bool:
        return self.require_signature or bool(self.keys)


@dataclass(frozen=True, slots=True)
class Checked:
    """An export that holds: how many events, who signed its seal (None: nobody), and how
    many decisions were checked against the controller's keys, by which keys."""

    events: int
    signed_by: str | None
    decisions: int = 0
    decision_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Failed:
    """The first line (1-based) that fails, and why."""

    line: int
    reason: str


def check_export(
    lines: Sequence[bytes],
    keys: Mapping[str, Ed25519PublicKey],
    *,
    controller: StateVerifier | None = None,
    require_signature: bool = False,
) -> Checked | Failed:
    """:func:`check` of lines already read."""
    trust = Trust(keys, controller, require_signature)
    return check(LinesInMemory(lines), trust)


def check(lines: ExportLines, trust: Trust) -> Checked | Failed:
    """Whether ``lines`` are an export as written: each event chained to the one before, the
    first to the start, the last line a seal that counts them (signed, by a key of
    ``trust.keys``), and each decision as the controller signed it (given its keys). The
    first line that fails is named."""
    last, count = lines.last, lines.count
    if last is None or count == 0:
        return Failed(1, "the file is empty: no seal")
    sealed = _seal_of(last)
    if isinstance(sealed, str):
        return Failed(count, sealed)
    data, raw = sealed
    # A seal whose signature fails vouches for nothing, its count and head included.
    found = _signature(data, raw, trust.keys, count)
    if found is None and data.start != start_digest(data.since, data.until, data.types):
        found = Failed(count, "the seal's start is not the digest of its span")
    if found is not None:
        return found
    walked = _Walk(lines, data, trust.controller).through()
    if isinstance(walked, Failed):
        return walked
    if data.sig is None and trust.seal_required:
        return Failed(
            count,
            "the seal is unsigned, and operator keys were given: whoever can rewrite the "
            "file can rewrite an unsigned chain",
        )
    return walked.model(data.key_id)


@dataclass
class _Tally:
    """What the walk saw of the decisions, for the verdict."""

    events: int = 0
    decisions: int = 0
    keys: set[str] = field(default_factory=set)

    def model(self, signed_by: str | None) -> Checked:
        return Checked(self.events, signed_by, self.decisions, tuple(sorted(self.keys)))


class _Walk:
    """One pass over the events, in order, to the first that fails."""

    def __init__(self, lines: ExportLines, data: SealData, controller: StateVerifier | None):
        self._lines, self._data, self._controller = lines, data, controller
        self._extra = lines.count - 1 - data.events
        """Lines the file holds beyond the seal's count (negative: fewer)."""
        self._read = {(r.topic, r.partition): r for r in data.read or ()}

    def through(self) -> _Tally | Failed:
        expected, tally = self._data.start, _Tally()
        pending: Failed | None = None
        """The first decision that fails, named once no chain break can name a line before."""
        for index, line in enumerate(self._lines.events()):
            parsed = _event(line)
            if isinstance(parsed, str):
                return _earlier(pending, Failed(index + 1, parsed))
            if parsed.get("prevdigest") != expected:
                return _earlier(pending, self._why(index, expected))
            if pending is not None:  # the line after it holds: no later break names one before
                return pending
            pending = self._placed(parsed, index + 1) or self._decision(parsed, index + 1, tally)
            assert isinstance(line, bytes)  # an Oversized line is no event (above)
            expected, tally.events = line_digest(line), tally.events + 1
        end = self._end(tally.events, expected)
        return pending or tally if end is None else _earlier(pending, end)

    def _placed(self, event: Mapping[str, object], number: int) -> Failed | None:
        """Whether the event was read where the seal says the export read (when it says)."""
        if self._data.read is None:
            return None
        topic, partition = event.get("kafkatopic"), event.get("kafkapartition")
        offset = event.get("kafkaoffset")
        where = f"{topic}/{partition}/{offset}"
        read = self._read.get((str(topic), partition if isinstance(partition, int) else -1))
        if read is None or not isinstance(offset, int) or not read.holds(offset):
            return Failed(number, f"read at {where}, outside the offsets the seal names")
        return None

    def _decision(self, event: Mapping[str, object], number: int, tally: _Tally) -> Failed | None:
        if self._controller is None or event.get("type") != DECISION_TYPE:
            return None
        data = event.get("data")
        if not isinstance(data, dict):
            return Failed(number, "the decision is not as the controller signed it: no decision")
        problem = self._controller.decision_problem(data)
        if problem is not None:
            return Failed(number, f"the decision is not as the controller signed it: {problem}")
        tally.decisions += 1
        tally.keys.add(str(data.get("key_id")))
        return None

    def _end(self, events: int, head: str) -> Failed | None:
        """Whether the seal counts the events read and names the last one's digest."""
        counted = self._data.events
        if head == self._data.head and events == counted:
            return None
        if events < counted:
            return Failed(events + 1, "a line is missing before the seal (dropped)")
        if events > counted:
            return Failed(events, f"the seal counts {counted} events, not more")
        return Failed(max(events, 1), "edited: the seal's head is not this line's digest")

    def _why(self, index: int, expected: str) -> Failed:
        """The line a break before line ``index + 1`` most likely names, by what else the
        file holds: one moved, one missing, or the line before edited."""
        before = "the start" if index == 0 else f"line {index}"
        if self._extra > 0:
            return Failed(
                index + 1, f"not a line of the export: it does not follow {before} (added)"
            )
        if self._extra < 0:
            return Failed(index + 1, f"a line is missing between {before} and this one (dropped)")
        follows = self._follower(index + 1, expected)
        if follows is not None:
            return Failed(
                index + 1,
                f"out of order: line {follows + 1}, not this one, follows {before} "
                "(moved or swapped)",
            )
        if index == 0:
            return Failed(1, "edited: its prevdigest is not the start's digest")
        return Failed(index, f"edited: line {index + 1} names another digest for this line")

    def _follower(self, start: int, expected: str) -> int | None:
        """The first line from the ``start``-th (0-based) that names ``expected``, read again."""
        for offset, line in enumerate(self._lines.events(start)):
            parsed = _event(line)
            if not isinstance(parsed, str) and parsed.get("prevdigest") == expected:
                return start + offset
        return None


def _earlier(pending: Failed | None, found: Failed) -> Failed:
    """The one of the two that names the earlier line (the chain's, at the same line)."""
    return found if pending is None or found.line <= pending.line else pending


def _event(line: Line) -> dict[str, object] | str:
    """The event a line holds, or why it is none."""
    if isinstance(line, Oversized):
        return (
            f"{line.size:,} bytes or more: longer than the {line.limit:,} bytes the check "
            "reads a line to (no line the export writes is; give a larger bound if this "
            "one's records are larger)"
        )
    try:
        parsed = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "edited: not JSON"
    if not isinstance(parsed, dict):
        return "edited: not a JSON object"
    if parsed.get("type") == SEAL_TYPE:
        return "a seal before the last line (exports joined?)"
    if not isinstance(parsed.get("prevdigest"), str):
        return "no prevdigest: not a line of a chained export (edited)"
    return parsed


def _seal_of(line: Line) -> tuple[SealData, dict[str, object]] | str:
    if isinstance(line, Oversized):
        return f"{line.size:,} bytes or more, and the last line must be the seal: cut short"
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
