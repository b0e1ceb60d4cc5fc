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

**When a waiting stage looks at the broker, and when its wait is alerted.** The
gate compares the stored offsets with the broker's log ends when the stage is
about to move (its verdict would advance or complete it) and, once the stage
is past its planned end (:func:`planned_end`), whenever its verdict holds on
incomplete evidence, whatever holds it: a partition last counted through
before the lag bound already holds the verdict on *lagging*, so a look taken
only before an advance would never see it again (:func:`looks_at_broker`).

Each such wait is timed from the first gate that saw it (:func:`timed`); one
that lasts ``engine.evidence_catch_up_alert_seconds`` raises one
``evidence_behind`` alert per stage, naming every partition waited for, its
records behind and its owner (:func:`waited_for`), whatever the plan's
``max_duration``.

Pure: the engine reads ingest's state from Redis and hands it here; the clock is an
argument.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.core.common import clock_text
from controller.core.rollouts.rollout import Phase, Rollout, VerdictKind
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
    aside = held or {}
    return _lags(
        targets,
        stored,
        owners or {},
        lambda topic, partition, records: (
            records > 0 and partition not in aside.get(topic, frozenset())
        ),
    )


def _lags(
    targets: Mapping[str, Mapping[int, int]],
    stored: Mapping[str, Mapping[int, int | None]],
    owners: Mapping[str, Mapping[int, str]],
    kept: Callable[[str, int, int], bool],
) -> tuple[PartitionLag, ...]:
    """Each partition with a target that ``kept`` keeps (given its topic, partition and
    records still to count), with its stored offset and owner, by topic and partition."""
    out = []
    for topic, ends in sorted(targets.items()):
        for partition, target in sorted(ends.items()):
            at = stored.get(topic, {}).get(partition)
            records = max(target - (at or 0), 0)
            if kept(topic, partition, records):
                owner = owners.get(topic, {}).get(partition)
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


def planned_end(rollout: Rollout) -> datetime | None:
    """When the running stage was planned to end: its watch's end in the watch after
    the last stage, else its minimum duration after it began. None unless running
    (a paused stage waits for a person, not for its evidence)."""
    if rollout.phase is not Phase.RUNNING:
        return None
    if rollout.watch_until is not None:
        return rollout.watch_until
    return rollout.stage_started_at + rollout.plan.stages[rollout.stage].min_duration


def looks_at_broker(
    rollout: Rollout, verdict: VerdictKind, seen: Completeness, now: datetime
) -> bool:
    """Whether the gate compares the stage's stored offsets with the broker's log ends:
    its ``verdict`` would move it, or holds on incomplete evidence (``seen``) past the
    stage's planned end. A rollback or a pause never waits, so never looks."""
    if verdict is VerdictKind.ADVANCE:
        return True
    end = planned_end(rollout)
    return verdict is VerdictKind.HOLD and not seen.complete and end is not None and now >= end


@dataclass(frozen=True, slots=True)
class WaitClock:
    """A stage's wait for its evidence, as the gates saw it."""

    since: datetime | None = None
    """When the wait under way began (None: the stage waits for nothing)."""
    alerted: bool = False
    """Whether the stage's ``evidence_behind`` alert was raised (once a stage)."""


def timed(
    clock: WaitClock, *, waiting: bool, now: datetime, after: timedelta | None
) -> tuple[WaitClock, bool]:
    """``clock`` after a gate that found the stage ``waiting`` (or not) at ``now``, and
    whether to raise the alert now: once the wait lasted ``after`` (None: never), once a
    stage. A wait that ended starts afresh when the stage waits again."""
    if not waiting:
        return WaitClock(None, clock.alerted), False
    since = clock.since or now
    due = after is not None and not clock.alerted and now - since >= after
    return WaitClock(since, clock.alerted or due), due


def waited_for(
    targets: Mapping[str, Mapping[int, int]],
    stored: Mapping[str, Mapping[int, int | None]],
    missing: Partitions,
    owners: Mapping[str, Mapping[int, str]],
) -> tuple[PartitionLag, ...]:
    """Every partition with a pinned target that the stage waits for, by topic and
    partition: those ``missing`` (held or lagging) and those whose ``stored`` next
    offset is below their target, each with its records still to count (0 for one
    lagging on a quiet log) and its owner."""
    return _lags(
        targets,
        stored,
        owners,
        lambda topic, partition, records: (
            records > 0 or partition in missing.get(topic, frozenset())
        ),
    )


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
