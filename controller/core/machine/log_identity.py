"""Which log a stored offset belongs to, and whether the broker's log now is that one.

An offset names a record of one log only. A topic deleted and made again (an
operator's delete, a broker back empty and an app's producer first to make the
topic) starts new logs at offset 0, which grow past the stored offsets as soon
as enough is produced: a log longer than the stored offset proves nothing. So
each partition's stored offset is kept with the identity of the log it was
counted on, in the same atomic write (:class:`LogIdentity`): the topic's id,
which Kafka gives every topic it makes (KIP-516, in metadata since Kafka 2.8),
and the topic's partition count.

A claim compares the stored identity with the broker's (:func:`identity_change`):

- a different topic id is a different topic, whatever its logs hold;
- fewer partitions is a different topic (Kafka never takes partitions away), and
  a partition the topic no longer has holds nothing of what was counted;
- more partitions under the same id, or where either side has no id, is a topic an
  operator grew, and its existing logs go on;
- an identity not known on either side (never stored, or a broker without topic ids
  that the partition count cannot tell apart) proves nothing.

A change of id or partition count concerns the whole topic: every stored partition finds
it at its claim, and one that the topic no longer has is held by the claim that finds
the topic shrunk (:mod:`controller.daemon.ingest.log_gaps`).
Pure: the caller asks Redis and the broker.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    def stored(cls, topic_id: str | bytes | None, partitions: str | bytes | None) -> LogIdentity:
        """The identity read back from storage; an empty or absent part is unknown."""
        text = _text(topic_id)
        count = _text(partitions)
        return cls(text or None, int(count) if count.isdigit() else None)

    @property
    def known(self) -> bool:
        return self.topic_id is not None or self.partitions is not None


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
