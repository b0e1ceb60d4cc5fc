"""Before a stage moves: its evidence counted up to the broker's log ends, pinned for the stage.

The lag bound (``engine.evidence_max_lag_seconds``) guesses from when each
partition was last counted through; the broker's offsets know. When a gate's
verdict would advance or complete a stage, or holds on incomplete evidence past
the stage's planned end (:func:`~controller.core.rollouts.looks_at_broker`),
:class:`CatchUp` asks the broker for the log end offset of every partition the
flag's events can be on (ListOffsets, within a short deadline), pins them as the
stage's *targets*, and compares them with the next offsets the flushes stored in
Redis. Until every stored offset reached its target the stage waits, naming each
partition behind and its lag in records. Pinned, a busy topic cannot keep the
stage waiting: what it waits for is what the broker held when the stage was first
about to move, not the moving end. A target reached is trusted for :data:`REASK`
(a watch that ends later, a stage the advisor held, or one still waiting for a
partition lagging or held, asks the broker again), and the broker is asked at most
once a gate pass, whatever the number of flags about to move.

A broker that cannot be asked (an error, the deadline) holds the stage and
says so: a source that cannot see must say so. A stage that has waited
``engine.evidence_catch_up_alert_seconds`` (for partitions behind, lagging or
held, or for the broker) raises one ``evidence_behind`` alert per stage, naming
the topic, every partition waited for, its records behind and the instance that
ingests it (as its ingest last named itself in Redis), whatever the plan's
``max_duration`` (:func:`~controller.core.rollouts.timed`). The pins are this
instance's memory: after a restart or a takeover the first gate pins again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from controller.core.common import ControllerError
from controller.core.reading import rollout_stage, stage_position
from controller.core.rollouts import (
    Completeness,
    RaiseAlert,
    Rollout,
    WaitClock,
    behind_targets,
    lag_words,
    timed,
    waited_for,
)
from controller.core.wire import JsonObject, JsonValue, PartitionLag

log = structlog.get_logger("controller.daemon.ingest.catch_up")

REASK = timedelta(seconds=10)
"""How long a stage's targets, once reached, stand before the broker is asked again."""
ALERT_KIND = "evidence_behind"


class LogEnds(Protocol):
    """The broker's log end offsets (:class:`~controller.adapters.kafka.LogEndReader`)."""

    async def log_ends(self, topics: Sequence[str]) -> dict[str, dict[int, int]]: ...


class StoredOffsets(Protocol):
    """What the flushes stored, and who ingests
    (:class:`~controller.adapters.redis.ingest_progress.IngestProgressStore`)."""

    async def stored_offsets(
        self, wanted: Mapping[str, Iterable[int]]
    ) -> dict[str, dict[int, int | None]]: ...

    async def owners(self) -> dict[str, dict[int, str]]: ...


BehindAlarm = Callable[[RaiseAlert, str | None], None]
"""Raises an alert about a flag (:class:`~controller.daemon.outputs.Alarms`)."""
Partitions = Mapping[str, frozenset[int]]


@dataclass(frozen=True, slots=True)
class Behind:
    """What a stage about to move, or past its planned end, still waits for."""

    behind: tuple[PartitionLag, ...] = ()
    """Partitions below their pinned targets (held ones aside): the gate waits for them."""
    unread: str | None = None
    since: datetime | None = None
    """When the wait under way began."""
    waited: tuple[PartitionLag, ...] = ()
    """Every partition waited for (behind, lagging or held), with its records and owner."""
    seen: Completeness = field(default_factory=Completeness)
    """The gate's input: the partitions held or lagging."""

    @property
    def waits(self) -> bool:
        """Whether the stage waits for anything: the wait is timed, and alerted."""
        return bool(self.behind or self.unread or self.waited or self.seen.missing)


@dataclass(slots=True)
class _Pin:
    stage: tuple[str, int]
    targets: dict[str, dict[int, int]] | None = None
    reached: datetime | None = None
    clock: WaitClock = field(default_factory=WaitClock)


class CatchUp:
    """Pins each stage's log-end targets when it first waits, says what is behind, and times
    the wait."""

    def __init__(
        self,
        *,
        ends: LogEnds,
        offsets: StoredOffsets,
        topics: Sequence[str],
        alert_after: timedelta | None,
        alarm: BehindAlarm | None = None,
    ) -> None:
        """``topics``: those the flags' events can be on; ``alert_after``: how long a stage
        may wait on them before the alert (None: never)."""
        self._ends, self._offsets, self._topics = ends, offsets, list(topics)
        self._alert_after, self._alarm = alert_after, alarm
        self._pins: dict[str, _Pin] = {}
        self._asked: dict[str, dict[int, int]] | str | None = None
        """This pass's answer of the broker, or why it gave none."""
        self.waiting: dict[str, Behind] = {}
        """Per flag, what its stage about to move (or past its planned end) waits for, for
        readiness."""

    def new_pass(self) -> None:
        """A new gate pass: the broker is asked again when a stage needs it."""
        self._asked = None

    def forget(self, flag: str) -> None:
        self._pins.pop(flag, None)
        self.waiting.pop(flag, None)

    def report(self) -> JsonObject:
        """Per flag whose stage waits (about to move, or past its planned end): since when,
        and for what."""
        return {flag: _said(b) for flag, b in sorted(self.waiting.items())}

    async def check(self, rollout: Rollout, now: datetime, seen: Completeness) -> Behind:
        """What ``rollout``'s stage, about to move or waiting past its planned end, waits
        for of the broker's log ends (nothing: it may move, as far as they go). ``seen``:
        the gate's input, whose partitions held or lagging are named with the rest."""
        pin = self._pin(rollout, now)
        if pin.targets is None:
            answer = await self._ask()
            if isinstance(answer, str):
                return self._waits(rollout, pin, now, Behind(unread=answer, seen=seen))
            pin.targets = answer
        stored = await self._offsets.stored_offsets(pin.targets)
        behind = behind_targets(pin.targets, stored, held=seen.held)
        if not behind:
            pin.reached = pin.reached or now
        if not (behind or seen.missing):
            return self._waits(rollout, pin, now, Behind())
        owners = await self._owners()
        owned = behind_targets(pin.targets, stored, held=seen.held, owners=owners)
        waited = waited_for(pin.targets, stored, seen.missing, owners)
        return self._waits(rollout, pin, now, Behind(owned, waited=waited, seen=seen))

    def _pin(self, rollout: Rollout, now: datetime) -> _Pin:
        """The stage's pin: kept while its targets are not reached or reached lately."""
        stage = (rollout.rollout_id, rollout.stage)
        pin = self._pins.get(rollout.flag)
        if pin is None or pin.stage != stage:
            pin = self._pins[rollout.flag] = _Pin(stage)
        elif pin.reached is not None and now - pin.reached > REASK:
            pin.targets, pin.reached = None, None
        return pin

    async def _ask(self) -> dict[str, dict[int, int]] | str:
        if self._asked is None:
            try:
                self._asked = await self._ends.log_ends(self._topics)
            except ControllerError as exc:
                log.warning("log_ends_unread", error=str(exc)[:300])
                self._asked = str(exc)[:300] or type(exc).__name__
        return self._asked

    async def _owners(self) -> dict[str, dict[int, str]]:
        try:
            return await self._offsets.owners()
        except ControllerError as exc:  # the names help; the wait stands without them
            log.warning("partition_owners_unread", error=str(exc)[:300])
            return {}

    def _waits(self, rollout: Rollout, pin: _Pin, now: datetime, said: Behind) -> Behind:
        """``said``, timed: the wait's start noted, and its alert raised once it is due."""
        pin.clock, due = timed(pin.clock, waiting=said.waits, now=now, after=self._alert_after)
        if not said.waits:
            self.waiting.pop(rollout.flag, None)
            return said
        said = dataclasses.replace(said, since=pin.clock.since)
        self.waiting[rollout.flag] = said
        if due and self._alarm is not None:
            self._alarm(alert(rollout, said, now), rollout.flag)
        return said


def alert(rollout: Rollout, said: Behind, now: datetime) -> RaiseAlert:
    """The ``evidence_behind`` alert: every partition waited for, its records behind and
    its owner, and those held or lagging."""
    waited = (now - said.since).total_seconds() if said.since else 0.0
    named = said.waited or said.behind
    what = [lag_words(named)] if named else []
    if said.unread:
        what.append(f"the broker could not say where its log ends are ({said.unread})")
    if not named and said.seen.missing:
        what.append(f"partitions {_listed(said.seen.missing)} not counted")
    summary = (
        f"{rollout.flag} at {rollout_stage(rollout)}: its evidence has not caught up with"
        f" the broker's log end for {waited:.0f} s: {'; '.join(what)}"
    )
    topics: list[JsonValue] = [*sorted({b.topic for b in named} | set(said.seen.missing))]
    details: JsonObject = {
        "stage": rollout.stage,
        "at_stage": stage_position(rollout),
        "waited_s": round(waited, 3),
        "topics": topics,
        **_said(said),
    }
    return RaiseAlert(ALERT_KIND, "warning", summary[:500], details)


def _said(said: Behind) -> JsonObject:
    """What the stage waits for: every partition with its records and owner, those held
    or lagging by topic, or why the broker could not say."""
    named = said.waited or said.behind
    held, lagging = _listed(said.seen.held), _listed(said.seen.lagging)
    return {
        "since": said.since.isoformat() if said.since else None,
        "behind": [b.model_dump(mode="json") for b in named],
        **({"held": held} if held else {}),
        **({"lagging": lagging} if lagging else {}),
        **({"unread": said.unread} if said.unread else {}),
    }


def _listed(partitions: Partitions) -> JsonObject:
    return {t: [*sorted(p)] for t, p in sorted(partitions.items()) if p}
