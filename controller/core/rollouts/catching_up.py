"""When a stage that waits for its evidence looks at the broker, and when its wait is alerted.

A stage waits for its evidence while a partition its events can be on is held,
lagging, or behind the log end the broker reported (:mod:`.completeness`). The
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

Pure: the clock is an argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.core.rollouts.completeness import Completeness, Partitions
from controller.core.rollouts.rollout import Phase, Rollout, VerdictKind
from controller.core.wire import PartitionLag


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
    out = []
    for topic, ends in sorted(targets.items()):
        wanted = missing.get(topic, frozenset())
        for partition, target in sorted(ends.items()):
            at = stored.get(topic, {}).get(partition)
            records = max(target - (at or 0), 0)
            if not records and partition not in wanted:
                continue
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
