"""What the gates know of ingest: the partitions held or lagging, read once a pass.

Ingest may run on another instance, so its state is read from Redis: the
partitions held for an operator's choice (per topic read), and when each
partition was last counted through (everything the broker had on it counted).
:class:`EvidenceWatch` reads both once per gate pass and gives each gate the
typed input :class:`~controller.core.rollouts.completeness.Completeness`. It also
remembers, per flag and stage, the partitions a gate saw missing, so a later
verdict on that stage says which of them were counted late; a flag is remembered
only while a stage of it saw some missing. That memory is this instance's: after
a restart or a takeover the first gate starts it afresh. A stage about to move is
also checked against the broker's log ends (:meth:`EvidenceWatch.before_moving`,
:mod:`~controller.daemon.ingest.catch_up`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Protocol

from controller.adapters.kafka import LogEndReader
from controller.adapters.redis import RedisClient, ingest_progress
from controller.core.machine import late_regression, passed_stages
from controller.core.rollouts import (
    Completeness,
    Rollout,
    Verdict,
    VerdictKind,
    counted_late,
    looks_at_broker,
)
from controller.daemon.ingest import BehindAlarm, CatchUp, LogEnds
from controller.ports import AggregateReader
from controller.settings import Settings


class IngestProgress(Protocol):
    """Ingest's state as the engine reads it, whichever instance ingests."""

    async def held(self) -> dict[str, set[int]]:
        """Per topic read, its partitions held for an operator's choice."""
        ...

    async def counted_through(self) -> dict[str, dict[int, datetime]]:
        """Per topic read, when each of its partitions was last counted through."""
        ...


StageKey = tuple[str, int]
LOG_ENDS_DEADLINE_S = 3.0
"""The most a gate waits for the broker's log ends before its stage holds, saying so."""


def evidence_watch(
    client: RedisClient,
    settings: Settings,
    clock: Callable[[], datetime],
    *,
    log_ends: LogEnds | None = None,
    alarm: BehindAlarm | None = None,
) -> EvidenceWatch:
    """The watch over the topics ``settings`` ingest (the Collector's too, when enabled),
    with the lag bound ``engine.evidence_max_lag_seconds``; with ``log_ends``
    (:func:`broker_log_ends`), a stage about to move waits for the broker's log ends too,
    and ``alarm`` raises the alert of one that does not catch up."""
    otlp = settings.otlp
    beside = (otlp.spans_topic, otlp.logs_topic) if otlp.enabled else ()
    events = settings.topics.events
    progress = ingest_progress(client, settings=settings.redis, events=events, beside=beside)
    lag, engine = settings.engine.evidence_max_lag_seconds, settings.engine
    after = engine.evidence_catch_up_alert_seconds
    catch_up = (
        None
        if log_ends is None
        else CatchUp(
            ends=log_ends,
            offsets=progress,
            topics=(events, *beside),
            alert_after=timedelta(seconds=after) if after else None,
            alarm=alarm,
        )
    )
    return EvidenceWatch(
        progress=progress,
        max_lag=timedelta(seconds=lag) if lag else None,
        clock=clock,
        catch_up=catch_up,
    )


def broker_log_ends(settings: Settings) -> LogEnds:
    """The broker's log ends, asked within :data:`LOG_ENDS_DEADLINE_S`."""
    return LogEndReader(settings.kafka, timeout_s=LOG_ENDS_DEADLINE_S)


class EvidenceWatch:
    """The partitions not counted up to the stages' horizon, for the gates and the views."""

    def __init__(
        self,
        *,
        progress: IngestProgress | None,
        max_lag: timedelta | None,
        clock: Callable[[], datetime],
        catch_up: CatchUp | None = None,
    ) -> None:
        """``max_lag``: how far behind the gate's time a partition may have been counted
        through before the stage waits for it; None: lag is not waited for, only holds.
        ``catch_up``: the broker's log ends a stage about to move waits for (None: not
        asked). Without ``progress`` (no ingest state to read) the evidence is always
        complete."""
        self._progress, self._max_lag, self._now = progress, max_lag, clock
        self.catch_up = catch_up
        self._held: dict[str, frozenset[int]] = {}
        self._through: dict[str, dict[int, datetime]] = {}
        self._released: dict[tuple[str, int], datetime] = {}
        """Partitions seen held, then not: when this watch saw them released."""
        self._missed: dict[str, tuple[StageKey, dict[str, frozenset[int]]]] = {}

    async def refresh(self) -> None:
        """Read what ingest holds, and how far it counted, from the store."""
        if self.catch_up is not None:
            self.catch_up.new_pass()
        if self._progress is None:
            return
        read = await self._progress.held()
        held = {t: frozenset(p) for t, p in read.items() if p}
        now = self._now()
        for topic, before in self._held.items():
            for partition in before - held.get(topic, frozenset()):
                self._released[topic, partition] = now
        self._held = held
        self._through = await self._progress.counted_through() if self._max_lag else {}

    def view(self, now: datetime | None = None) -> Completeness:
        """The completeness as last read, for a reader that acts on nothing."""
        when = now or self._now()
        horizon = None if self._max_lag is None else when - self._max_lag
        if horizon is None:
            return Completeness(held=dict(self._held))
        behind = _behind(self._through, horizon, self._held)
        lagging = _merged(behind, self._rereading(horizon))
        return Completeness(held=dict(self._held), lagging=lagging, horizon=horizon)

    def _rereading(self, horizon: datetime) -> dict[str, frozenset[int]]:
        """Partitions released from a hold and not counted through since: what they hold
        (a ``reread`` counts the log again) is not counted yet. One released before the
        horizon is judged by the lag bound alone."""
        out: dict[str, set[int]] = {}
        for (topic, partition), at in list(self._released.items()):
            through = self._through.get(topic, {}).get(partition)
            if at < horizon or (through is not None and through > at):
                del self._released[topic, partition]
            else:
                out.setdefault(topic, set()).add(partition)
        return {t: frozenset(p) for t, p in out.items()}

    def for_gate(self, rollout: Rollout, now: datetime) -> Completeness:
        """The gate's input for ``rollout``'s stage, naming the partitions counted late:
        those a gate of this stage saw missing and that are counted now."""
        seen = self.view(now)
        key = (rollout.rollout_id, rollout.stage)
        kept = self._missed.get(rollout.flag)
        missed = kept[1] if kept is not None and kept[0] == key else {}
        late = counted_late(missed, seen)
        remembered = _merged(missed, seen.missing)
        if remembered:
            self._missed[rollout.flag] = (key, remembered)
        else:  # nothing missed in this stage: nothing to remember (the memory stays small)
            self._missed.pop(rollout.flag, None)
        return Completeness(seen.held, seen.lagging, seen.horizon, late)

    async def checked(
        self, rollout: Rollout, verdict: VerdictKind, now: datetime, seen: Completeness
    ) -> Completeness:
        """``seen``, checked against the broker's log ends when the gate's ``verdict`` would
        move the stage, or holds on incomplete evidence past its planned end
        (:func:`~controller.core.rollouts.looks_at_broker`); else ``seen`` itself."""
        if not looks_at_broker(rollout, verdict, seen, now):
            return seen
        return await self.before_moving(rollout, now, seen)

    async def before_moving(
        self, rollout: Rollout, now: datetime, seen: Completeness
    ) -> Completeness:
        """``seen`` (this gate's input), with what the stage, about to move, still waits for
        of the broker's log ends: partitions behind their pinned targets, or a broker that
        could not be asked. They are remembered as missing, to be named counted late."""
        if self.catch_up is None:
            return seen
        said = await self.catch_up.check(rollout, now, seen)
        if not said.behind and said.unread is None:
            return seen
        checked = dataclasses.replace(seen, behind=said.behind, unread=said.unread)
        key = (rollout.rollout_id, rollout.stage)
        kept = self._missed.get(rollout.flag)
        missed = kept[1] if kept is not None and kept[0] == key else {}
        if remembered := _merged(missed, checked.missing):
            self._missed[rollout.flag] = (key, remembered)
        return checked

    def forget(self, flag: str) -> None:
        """``flag`` no longer has an active stage: nothing of it to remember."""
        self._missed.pop(flag, None)
        if self.catch_up is not None:
            self.catch_up.forget(flag)


def _behind(
    through: Mapping[str, Mapping[int, datetime]],
    horizon: datetime,
    held: Mapping[str, frozenset[int]],
) -> dict[str, frozenset[int]]:
    """Per topic, its partitions counted through before ``horizon`` (held ones aside)."""
    out = {}
    for topic, partitions in through.items():
        aside = held.get(topic, frozenset())
        behind = frozenset(p for p, at in partitions.items() if at < horizon and p not in aside)
        if behind:
            out[topic] = behind
    return out


def _merged(
    a: Mapping[str, frozenset[int]], b: Mapping[str, frozenset[int]]
) -> dict[str, frozenset[int]]:
    return {t: frozenset(a.get(t, frozenset()) | b.get(t, frozenset())) for t in {*a, *b}}


LATE_WINDOW = timedelta(days=1)
"""How long after it completed a rollout's stages are still tested on late evidence."""


class PassedStages:
    """Tests the stages a rollout passed again when its flag has news: evidence counted late.

    A flag with traffic has news every pass, so each flag's passed stages are read at most
    once per ``every`` (the sweep interval): news that comes sooner is owed, and read at a
    later gate, a sweep's included. A completed rollout's are read for
    :data:`LATE_WINDOW` after it completed.
    """

    def __init__(self, aggregates: AggregateReader, every: timedelta = timedelta(0)) -> None:
        self._aggregates, self._every = aggregates, every
        self._tested: dict[str, datetime] = {}
        self._owed: set[str] = set()

    async def checked(
        self, rollout: Rollout, verdict: Verdict, now: datetime, *, fresh: bool
    ) -> Verdict:
        """``verdict``, or the regression found in a passed stage's evidence. Only a gate
        with news (events counted late make the flag's news, like any) or news owed reads
        them, in one read, and only when the stage itself does not already roll back."""
        if verdict.kind is VerdictKind.ROLLBACK:
            return verdict
        return await self.late(rollout, now, fresh=fresh) or verdict

    async def late(self, rollout: Rollout, now: datetime, *, fresh: bool) -> Verdict | None:
        """The regression in the evidence of a stage ``rollout`` passed, if any. None too
        without news (``fresh``) or news owed, when its stages were read less than ``every``
        ago (the news is owed then), or when it completed long ago."""
        flag, stages, done = rollout.flag, passed_stages(rollout), rollout.completed_at
        if not stages or (done is not None and now - done > LATE_WINDOW):
            return None
        if not (fresh or flag in self._owed):
            return None
        last = self._tested.get(flag)
        if last is not None and now - last < self._every:
            self._owed.add(flag)
            return None
        self._tested[flag] = now
        self._owed.discard(flag)
        reads = await self._aggregates.read_many([(rollout.flag, v) for v in stages.values()])
        return late_regression(rollout, dict(zip(stages, reads, strict=True)), now)
