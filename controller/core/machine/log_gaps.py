"""Events partitions whose log no longer holds the stored offset, and the operator's choice.

Ingest resumes each partition at the offset stored in Redis with its counts.
A broker that comes back without its data (a cluster rebuilt, a topic deleted
and created again, an unclean leader election) has a log that ends before that
offset, or fewer partitions than were counted. Reading on would either skip the
new records silently (their offsets look already counted) or count them under
offsets that mean something else, so such a partition is *held*: nothing is
read from it until an operator chooses, by a signed :class:`IngestCommand`,

- ``reread``: read the partition from its earliest offset (the topic is new, or
  retention deleted records before they were counted: everything on it is
  uncounted), or
- ``accept_gap``: read from where the log ended when the gap was found (the log
  was cut short: what it lost is lost, and what came after is counted).

Which one fits is read off the log (:attr:`LogGap.fits`, advice only: the
operator decides): a log that starts at 0 and holds at most half of what was
counted, or a topic with fewer partitions, looks new, so ``reread`` fits; a log
that ends a little before the stored offset looks cut short, so ``accept_gap``.

A log's identity is not its offsets. A topic made again (deleted and created,
or a broker back empty and an app's producer first to make it) starts new logs
at offset 0, which grow past the stored offsets as soon as enough is produced:
a log longer than the stored offset proves nothing. So each stored offset is
kept with the identity of the log it was counted on, in the same atomic write
(:class:`LogIdentity`: the topic's id, KIP-516, and its partition count), and
:func:`identity_change` compares it with the broker's: another id is another
topic, whatever its logs hold; fewer partitions is another topic (Kafka never
takes partitions away), and a partition the topic lacks holds nothing counted;
more partitions under the same id (or with no ids to compare) is a topic an
operator grew; an identity unknown on either side proves nothing.

Pure: :func:`gap_of` finds a gap from numbers the caller asked of the broker
and of Redis; :func:`identity_change` whether a log is another one;
:func:`resume_offset` says where a choice resumes; :func:`audit` is the
decision that records a command's outcome.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, ClassVar, Literal

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import Field, StringConstraints

from controller.core.common import MessageId, Timestamp
from controller.core.machine.commands import signature_refusal
from controller.core.rollouts import RaiseAlert
from controller.core.wire import IngestEvidence, JsonObject, SignedCommand

Choice = Literal["reread", "accept_gap"]
CHOICES: tuple[Choice, ...] = ("reread", "accept_gap")
MAX_PARTITIONS = 10_000
"""The most partitions one command may name (a topic has far fewer)."""
AUDIT_FLAG = "ingest:events"
"""Decisions on ingest commands carry this where a flag's decision carries the flag."""
ALERT_KIND = "events_log_gap"
VERBS: dict[Choice, str] = {"reread": "reread", "accept_gap": "accept-gap"}
"""Each choice as ``rolloutctl ingest`` spells it."""
LOOKS: dict[Choice, str] = {
    "reread": "the topic looks new (a broker back empty, or the topic made again) or starts"
    " past the stored offset: none of its records was counted",
    "accept_gap": "the log looks cut short before the stored offset: what came after the cut"
    " was not counted",
}
"""Why each choice fits the log it is advised for."""


@dataclass(frozen=True, slots=True)
class LogGap:
    """Why one events partition is held: its log and partition count against what Redis holds."""

    partition: int
    stored: int | None
    """The next offset to read that Redis holds, None if never flushed."""
    beginning: int
    end: int
    """The broker's earliest offset and log end offset when the gap was found."""
    partitions: int | None = None
    recorded_partitions: int | None = None
    """The topic's partition count now, and the count Redis recorded before."""
    fetched_from: int | None = None
    """The offset a fetch served, before the stored one (the consumer's position was reset)."""
    changed: str | None = None
    """How the topic's identity differs from the one stored with the offset: another log
    (:func:`identity_change`), however long."""
    first_start: int | None = None
    """Where the log started when ingest first saw the topic, for a partition never counted
    since: a log that now starts later lost records before they were first counted."""

    @property
    def shrank(self) -> bool:
        now, before = self.partitions, self.recorded_partitions
        return now is not None and before is not None and now < before

    @property
    def cut(self) -> bool:
        """The log starts after the stored offset: records not counted yet were deleted."""
        return self.stored is not None and self.stored < self.beginning

    @property
    def cut_uncounted(self) -> bool:
        """Never counted, and the log starts after where it started when ingest first saw
        the topic: retention or an operator's delete-records removed records not counted."""
        first = self.first_start
        return self.stored is None and first is not None and self.beginning > first

    @property
    def why(self) -> str:
        reasons = []
        if self.cut_uncounted:
            reasons.append(
                f"no offset of it was ever counted, and its log starts at offset"
                f" {self.beginning}, after offset {self.first_start} where it started when the"
                " topic was first read: records deleted before they were first counted"
            )
        if self.stored is not None and self.stored > self.end:
            reasons.append(
                f"the log ends at offset {self.end}, before the stored offset {self.stored}"
            )
        if self.cut:
            reasons.append(
                f"the log starts at offset {self.beginning}, after the stored offset"
                f" {self.stored}: uncounted records deleted"
            )
        if self.fetched_from is not None and self.stored is not None:
            reasons.append(
                f"the broker served offset {self.fetched_from}, before the stored offset"
                f" {self.stored}"
            )
        if self.shrank and not self.changed:  # a changed identity names the count
            reasons.append(
                f"the topic has {self.partitions} partitions, {self.recorded_partitions} recorded"
            )
        if self.changed:
            reasons.append(f"{self.changed}: the stored offset names a record of another log")
        return "; ".join(reasons) or "no gap"

    @property
    def fits(self) -> Choice:
        """The choice that fits what the log looks like; advice, the operator decides.

        A topic made again (another id, fewer partitions), a log reset to records past
        the stored offset, or a log that starts at 0 and holds at most half of what was
        counted is new; a log that starts after the stored offset holds nothing counted
        either; any other log that ends before the stored offset was cut short.
        """
        stored = self.stored
        if stored is None or self.shrank or self.cut or self.changed:
            return "reread"
        if self.fetched_from is not None and self.end >= stored:
            return "reread"
        return "reread" if self.beginning == 0 and self.end * 2 <= stored else "accept_gap"

    def alert(self, topic: str, *, beside: bool = False) -> RaiseAlert:
        """The critical alert that tells operators the partition is held, and what to do;
        ``beside``: the topic is read beside the events topic, so the commands name it."""
        named = f" --topic {topic}" if beside else ""
        summary = (
            f"events partition {self.partition} of {topic} is held: {self.why}. Nothing is"
            f" read from it until an operator chooses; {LOOKS[self.fits]}, so"
            f" `rolloutctl ingest {VERBS[self.fits]}{named}` fits (reread: count the topic from"
            " its earliest offset; accept-gap: from where the log ended). docs/architecture.md,"
            " 'A broker that lost its data'."
        )
        return RaiseAlert(ALERT_KIND, "critical", summary, self.details() | {"fits": self.fits})

    def details(self) -> JsonObject:
        return {
            "partition": self.partition,
            "stored_offset": self.stored,
            "beginning": self.beginning,
            "end": self.end,
            "partitions": self.partitions,
            "recorded_partitions": self.recorded_partitions,
            "fetched_from": self.fetched_from,
            "changed": self.changed,
            "first_start": self.first_start,
        }


def gap_of(
    partition: int,
    *,
    stored: int | None,
    beginning: int,
    end: int,
    partitions: int | None,
    recorded_partitions: int | None,
    changed: str | None = None,
) -> LogGap | None:
    """The gap of ``partition``, or None when its log still holds the stored offset.

    A stored offset beyond the log end cannot be read: the log lost records
    that were counted. A stored offset before the log start cannot be read either:
    retention (or an operator's delete-records) removed records not yet counted,
    which the client's reset to the earliest offset would skip without a word. A
    partition count below the one recorded means the topic was made again: keys now
    land on other partitions. So does a ``changed`` identity, however long the log
    (:func:`identity_change`).
    """
    gap = LogGap(partition, stored, beginning, end, partitions, recorded_partitions, None, changed)
    beyond = stored is not None and stored > end
    return gap if beyond or gap.cut or gap.shrank or gap.changed else None


@dataclass(frozen=True, slots=True)
class LogIdentity:
    """What tells one topic's logs from another's of the same name."""

    topic_id: str | None
    """The topic's id (a UUID), None where the broker gives none."""
    partitions: int | None
    """The topic's partition count, None where unknown."""

    def fields(self) -> dict[str, str]:
        """The known parts, as stored beside an offset ('' for an unknown part)."""
        count = "" if self.partitions is None else str(self.partitions)
        return {"topic_id": self.topic_id or "", "partitions": count}

    @classmethod
    def stored(
        cls, topic_id: str | bytes | None, partitions: str | bytes | None
    ) -> LogIdentity | None:
        """The identity read back from storage; an empty or absent part is unknown, and
        None when neither is known."""
        text, count = _text(topic_id), _text(partitions)
        if not text and not count.isdigit():
            return None
        return cls(text or None, int(count) if count.isdigit() else None)


def identity_change(
    partition: int, *, stored: LogIdentity | None, live: LogIdentity | None
) -> str | None:
    """Why ``partition``'s log on the broker (``live``) is not the one its stored offset was
    counted on (``stored``), or None when nothing proves it."""
    if live is None:
        return None
    if live.partitions is not None and partition >= live.partitions:
        return f"the topic has {live.partitions} partitions now, none numbered {partition}"
    if stored is None:
        return None
    reasons = []
    if _other_id(stored, live):
        reasons.append(
            f"the topic's id is {live.topic_id}, {stored.topic_id} recorded: the topic was"
            " made again"
        )
    if _fewer(stored, live):
        reasons.append(f"the topic has {live.partitions} partitions, {stored.partitions} recorded")
    return "; ".join(reasons) or None


def _other_id(stored: LogIdentity, live: LogIdentity) -> bool:
    return bool(stored.topic_id and live.topic_id and stored.topic_id != live.topic_id)


def _fewer(stored: LogIdentity, live: LogIdentity) -> bool:
    before, now = stored.partitions, live.partitions
    return before is not None and now is not None and now < before


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def advice(gaps: Sequence[LogGap], *, named: str = "") -> str:
    """Which command fits which held partitions, and why (``named``: the commands' ``--topic``
    option, for a topic read beside the events topic)."""
    advised = []
    for choice in CHOICES:
        fitting = ", ".join(f"p{g.partition}" for g in gaps if g.fits == choice)
        if fitting:
            command = f"rolloutctl ingest {VERBS[choice]}{named}"
            advised.append(f"`{command}` fits {fitting} ({LOOKS[choice]})")
    return "; ".join(advised)


def resume_offset(choice: Choice, *, gap_end: int, beginning: int, end: int) -> int:
    """Where a held partition resumes: its earliest offset (``reread``), or where the log
    ended when the gap was found (``accept_gap``), kept within the log as it is now."""
    if choice == "reread":
        return beginning
    return min(max(gap_end, beginning), end)


class IngestCommand(SignedCommand):
    """An operator's choice for held events partitions, signed like every command."""

    type: Literal["ingest"]
    id: MessageId = Field(description="Unique id of this command, used for deduplication.")
    ts: Timestamp = Field(description="When it was issued: epoch ms, or RFC 3339.")
    action: Choice = Field(
        description="`reread`: read the held partitions from their earliest offset (the "
        "topic is new); `accept_gap`: read from where their log ended when the gap was "
        "found (what the broker lost stays uncounted)."
    )
    partitions: list[Annotated[int, Field(ge=0, le=MAX_PARTITIONS)]] = Field(
        default_factory=list,
        max_length=MAX_PARTITIONS,
        description="The held events partitions it applies to; empty: every held one.",
    )
    topic: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,249}$")] | None = Field(
        default=None,
        description="The topic whose held partitions it applies to: the events topic when "
        "none; the Collector's topics (`otlp.spans_topic`, `otlp.logs_topic`) are held alike.",
    )
    sig: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None,
        description="Base64 Ed25519 signature over the canonical command without `sig`.",
    )

    actor_follows: ClassVar[str] = "topic"
    type_leads: ClassVar[bool] = True


def parsed(value: bytes) -> tuple[IngestCommand, JsonObject] | None:
    """The ingest command in a record of the commands topic, with its raw JSON; None for a
    record of another type. Raises ``ValidationError`` or ``orjson.JSONDecodeError`` for an
    ingest command that breaks the contract."""
    loaded = orjson.loads(value)
    if not isinstance(loaded, dict) or loaded.get("type") != "ingest":
        return None
    raw: JsonObject = loaded
    return IngestCommand.model_validate(raw), raw


def refusal(
    command: IngestCommand,
    raw: Mapping[str, object],
    *,
    keys: Mapping[str, Ed25519PublicKey],
    now: datetime,
    max_age_seconds: float,
) -> str | None:
    """Why the command may not run (signature, operator key, freshness), or None."""
    return signature_refusal(
        raw, ts=command.ts, keys=keys, now=now, max_age_seconds=max_age_seconds
    )


def chosen(command: IngestCommand, held: set[int]) -> list[int] | str:
    """The held partitions ``command`` applies to, or why it applies to none."""
    if not held:
        return "no events partition is held"
    named = set(command.partitions)
    if not named:
        return sorted(held)
    if missing := sorted(named - held):
        return f"events partitions {missing} are not held (held: {sorted(held)})"
    return sorted(named)


def audit(command: IngestCommand, result: list[int] | str, *, now_ms: int) -> JsonObject:
    """The decision (kind ``ingest``) that records ``command``'s outcome: applied to the
    partitions named in its evidence, or rejected with the reason. Its id follows from the
    command's, so a decision published again is deduplicated by its consumers."""
    refused = result if isinstance(result, str) else None
    evidence = IngestEvidence(actor=command.actor, reason=command.reason)
    if refused is None:
        evidence = evidence.merged(partitions=result)
    return {
        "type": "decision",
        "v": 1,
        "id": hashlib.sha256(f"ingest-decision:{command.id}".encode()).hexdigest()[:32],
        "ts": now_ms,
        "flag": AUDIT_FLAG,
        "kind": "ingest",
        "action": f"ingest {command.action}",
        "outcome": "rejected" if refused is not None else "applied",
        "reason": (refused or "")[:500],
        "command_id": command.id,
        "evidence": evidence.wire(),
    }
