"""Whether a stage's evidence is complete: the logs its events can be on, counted to its horizon.

Events are keyed by unit, so any partition of the events topic (and of the
Collector's topics) can carry any flag's events. A stage's evidence is complete
when every one of them is counted up to the stage's *horizon*: the gate's time
less the lag bound (``engine.evidence_max_lag_seconds``). A partition is

- *held* while ingest holds it for an operator's choice (its log lost or cut
  what was counted, :mod:`~controller.core.machine.log_gaps`): nothing on it is
  counted until ``rolloutctl ingest reread`` or ``accept-gap``;
- *lagging* while it was last counted through (everything the broker had on it
  counted) before the horizon: its owner is behind, stopped, or being replaced;
- *behind* while its stored offset is below its *target*: the log end the broker
  reported when the stage was first about to move, pinned for the stage
  (:func:`behind_targets`). The lag bound guesses, the broker's offsets know: a
  partition whose owner froze for less than the bound is behind, not lagging.
  When the broker could not be asked, the stage waits too (``unread``).

An advance or a completion waits while any is held or lagging, and says which
(:class:`~controller.core.wire.EvidenceWait`); a rollback never waits, since harm
on part of the data is enough. Partitions the gate saw missing earlier in the
stage and no longer held are *late*: a verdict on the stage says their evidence
came late (:class:`~controller.core.wire.LateEvidence`).

Pure: the engine reads ingest's state from Redis and hands it here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from controller.core.common import clock_text
from controller.core.wire import EvidenceWait, LateEvidence, PartitionLag

Partitions = Mapping[str, frozenset[int]]
"""Partitions by topic."""


@dataclass(frozen=True, slots=True)
class Completeness:
    """What ingest has counted of the logs a flag's events can be on: the gate's input."""

    held: Partitions = field(default_factory=dict)
    """Per topic, its partitions held for an operator's choice."""
    lagging: Partitions = field(default_factory=dict)
    """Per topic, its partitions last counted through before ``horizon``."""
    horizon: datetime | None = None
    """What every partition must be counted up to before the stage moves on."""
    late: Partitions = field(default_factory=dict)
    """Per topic, partitions held or lagging earlier in the stage and being counted now."""
    behind: tuple[PartitionLag, ...] = ()
    """Partitions not yet counted up to the broker's log end pinned for the stage."""
    unread: str | None = None
    """Why the broker's log ends could not be read, when the stage was about to move."""

    @property
    def complete(self) -> bool:
        return not (_some(self.held) or _some(self.lagging) or self.behind or self.unread)

    @property
    def missing(self) -> dict[str, frozenset[int]]:
        """Per topic, every partition not counted up to the horizon (held or lagging) or to
        its target (behind)."""
        return _union(_union(self.held, self.lagging), _partitions(self.behind))

    def waiting(self) -> str | None:
        """Why an advance waits, in words; None when the evidence is complete."""
        if self.complete:
            return None
        said = [f"{_named(self.held)} held for an operator's choice"] if _some(self.held) else []
        if _some(self.lagging):
            to = f" up to {clock_text(self.horizon)}" if self.horizon else ""
            said.append(f"{_named(self.lagging)} not yet counted{to}")
        if self.behind:
            said.append(f"not yet counted up to the broker's log end: {lag_words(self.behind)}")
        if self.unread:
            said.append(f"the broker's log ends could not be read ({self.unread})")
        return "evidence incomplete: " + "; ".join(said)

    def evidence(self) -> EvidenceWait | None:
        """The wait as the verdict's evidence carries it; None when complete."""
        why = self.waiting()
        if why is None:
            return None
        return EvidenceWait(
            held=_listed(self.held) or None,
            lagging=_listed(self.lagging) or None,
            horizon=self.horizon.isoformat() if self.horizon and _some(self.lagging) else None,
            behind=list(self.behind) or None,
            unread=self.unread,
            waiting=why,
        )

    def late_evidence(self) -> LateEvidence | None:
        """The partitions counted late, as evidence; None when none was."""
        if not _some(self.late):
            return None
        why = f"{_named(self.late)} held or lagging earlier in the stage, counted late"
        return LateEvidence(partitions=_listed(self.late), why=why)


def counted_late(missed: Partitions, now: Completeness) -> dict[str, frozenset[int]]:
    """Of the partitions ``missed`` earlier in a stage, those being counted by ``now``:
    no longer held (one still catching up is lagging too, and the stage waits for it)."""
    held = now.held
    late = {t: frozenset(p - held.get(t, frozenset())) for t, p in missed.items()}
    return {t: p for t, p in late.items() if p}


def behind_targets(
    targets: Mapping[str, Mapping[int, int]],
    stored: Mapping[str, Mapping[int, int | None]],
    *,
    held: Partitions | None = None,
    owners: Mapping[str, Mapping[int, str]] | None = None,
) -> tuple[PartitionLag, ...]:
    """The partitions whose ``stored`` next offset (None or absent: nothing counted) is
    below their pinned ``target``, held ones aside (they are named held), by topic and
    partition. A stored offset past the target (a log made again) is not behind."""
    aside, known = held or {}, owners or {}
    out = []
    for topic, ends in sorted(targets.items()):
        for partition, target in sorted(ends.items()):
            at = stored.get(topic, {}).get(partition)
            if partition in aside.get(topic, frozenset()) or (at or 0) >= target:
                continue
            owner = known.get(topic, {}).get(partition)
            records = target - (at or 0)
            out.append(
                PartitionLag(
                    topic=topic,
                    partition=partition,
                    records=records,
                    target=target,
                    stored=at,
                    owner=owner,
                )
            )
    return tuple(out)


def lag_words(behind: tuple[PartitionLag, ...]) -> str:
    """``behind`` in words: "partition 1 of events 120 records behind (owner a:12)"."""
    return ", ".join(
        f"partition {b.partition} of {b.topic} {b.records} records behind"
        + (f" (owner {b.owner})" if b.owner else " (no owner known)")
        for b in behind
    )


def _partitions(behind: tuple[PartitionLag, ...]) -> dict[str, frozenset[int]]:
    out: dict[str, set[int]] = {}
    for b in behind:
        out.setdefault(b.topic, set()).add(b.partition)
    return {t: frozenset(p) for t, p in out.items()}


def _some(partitions: Partitions) -> bool:
    return any(partitions.values())


def _union(a: Partitions, b: Partitions) -> dict[str, frozenset[int]]:
    out = {t: frozenset(a.get(t, frozenset()) | b.get(t, frozenset())) for t in {*a, *b}}
    return {t: p for t, p in out.items() if p}


def _listed(partitions: Partitions) -> dict[str, list[int]]:
    return {t: sorted(p) for t, p in sorted(partitions.items()) if p}


def _named(partitions: Partitions) -> str:
    """``partitions`` in words: "partitions [1, 2] of events"."""
    return ", ".join(f"partitions {sorted(p)} of {t}" for t, p in sorted(partitions.items()) if p)
