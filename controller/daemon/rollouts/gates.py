"""The gate loop: evaluate rollouts' stages and apply the verdicts through the rollouts service.

Gates run for the flags whose commands partition this instance owns: those
that received events since the last pass every ``gate_interval_seconds``, and
all active ones every ``sweep_interval_seconds`` (timers, minimum durations).
Each pass first publishes what a failed drain left in an outbox. A verdict the
advisor should see starts a consultation (:mod:`~controller.daemon.rollouts.consulting`)
and the loop goes on; every other verdict, and the timers, go to the service.

A pass gates its flags :data:`GATE_BATCH` at a time, and reads each batch
before gating it: the states in one pipelined read (``load_many``; a sweep has
them all from ``load_all``), then the aggregates of every active flag that
needs a read in one ``read_many``. A thousand flags are so a few dozen round
trips, not two per flag, and a state is at most one batch old when its
verdict is offered, not a whole pass. A batch read that fails for good (a
damaged key) leaves each flag of the batch to read its own, so the damage
stays with its flag.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from controller.core.common import ControllerError, StoreError
from controller.core.machine import evaluate
from controller.core.rollouts import (
    GateInput,
    Input,
    Phase,
    Rollout,
    TickInput,
    Verdict,
    prerequisite_wait,
)
from controller.core.stats import FlagAggregates
from controller.core.wire import MAX_PREREQUISITE_DEPTH, parent_key
from controller.daemon.metrics import Metrics
from controller.daemon.rollouts.completeness import EvidenceWatch, PassedStages
from controller.daemon.rollouts.consulting import Consultations
from controller.daemon.rollouts.containment import Containment, Retry
from controller.daemon.rollouts.history import Recorder
from controller.daemon.rollouts.rollouts import Rollouts
from controller.daemon.rollouts.sources import SourceReadings
from controller.kit.backoff import sleep_or_stop
from controller.ports import AggregateReader, ControlSource, Loaded, RolloutStates
from controller.settings import EngineSettings

GATE_BATCH = 50
"""Flags read together, then gated, in a pass."""


class GateLoop:
    """Gates the owned flags with news every pass and all of them every sweep."""

    def __init__(
        self,
        *,
        rollouts: Rollouts,
        states: RolloutStates,
        aggregates: AggregateReader,
        consultations: Consultations,
        metrics: Metrics,
        history: Recorder,
        contained: Containment,
        retry: Retry,
        stopping: asyncio.Event,
        settings: EngineSettings,
        clock: Callable[[], datetime],
        sources: SourceReadings | None = None,
    ) -> None:
        self._rollouts, self._states, self._aggregates = rollouts, states, aggregates
        self._sources = sources  # guardrails read from Prometheus, off this loop
        self.evidence = EvidenceWatch(progress=None, max_lag=None, clock=clock)
        """The partitions ingest holds or lags on (none known unless given)."""
        self.passed = PassedStages(aggregates, timedelta(seconds=settings.sweep_interval_seconds))
        self._consultations, self._metrics, self._history = consultations, metrics, history
        self._contained, self._retry, self._stopping = contained, retry, stopping
        self._settings, self._now = settings, clock
        self._stale_after = timedelta(days=settings.stale_after_days)
        # Last aggregates read per flag, with the stage they belong to.
        self._seen: dict[str, tuple[tuple[str, int, frozenset[int]], FlagAggregates]] = {}
        self._sweep_now = False
        self.last_pass = time.monotonic()
        """When the loop last completed a pass (monotonic clock), for readiness."""

    def sweep_soon(self) -> None:
        """Gate every owned flag at the next pass: commands partitions were just assigned."""
        self._sweep_now = True

    async def run(self, control: ControlSource) -> None:
        """A pass every ``gate_interval_seconds``, a full sweep when one is due."""
        last_sweep = datetime.min.replace(tzinfo=UTC)
        sweep = timedelta(seconds=self._settings.sweep_interval_seconds)
        while not await sleep_or_stop(self._settings.gate_interval_seconds, self._stopping):
            now = self._now()
            full, self._sweep_now = self._sweep_now or now - last_sweep >= sweep, False
            passed = self._retry(lambda f=full: self.run_pass(control, full=f), "gates")  # type: ignore[misc]
            # A pass that fails for good (a damaged key every pass reads) is
            # reported once and tried again; /readyz shows the loop stalled.
            if await self._contained.run(passed, where="gate pass"):
                last_sweep = now if full else last_sweep

    async def run_pass(self, control: ControlSource, *, full: bool) -> bool:
        """Drain what waits, then gate the owned flags with news (all of them if ``full``)."""
        for flag in self._rollouts.undrained:  # saved, then not published
            await self._contained.run(self._rollouts.drain(flag), where="drain", flag=flag)
        await self.evidence.refresh()  # once a pass: the partitions its gates wait for
        dirty = await self._aggregates.pop_dirty()
        theirs = {f for f in dirty if not control.owns(f)}
        if theirs:  # another instance gates these: leave the news for it
            await self._aggregates.mark_dirty(theirs)
        mine = dirty - theirs
        # A sweep reads every state at once (load_all: round trips that do not grow
        # with the flags); a flag it could not read fails alone, in its gate below.
        every = await self._states.load_all() if full else {}
        swept = {f for f in every if control.owns(f)}
        if full:  # the flags this instance no longer gates are another's to report
            self._metrics.guardrails.retain(swept)
            if self._sources is not None:
                self._sources.retain(swept)
        flags = sorted(mine | swept)
        for start in range(0, len(flags), GATE_BATCH):
            await self._gate_batch(flags[start : start + GATE_BATCH], every, fresh=mine)
        self.last_pass = time.monotonic()
        return True

    async def _gate_batch(
        self, flags: list[str], loaded: dict[str, Loaded | StoreError], *, fresh: set[str]
    ) -> None:
        """Read what ``flags`` need (their states unless ``loaded`` has them), then gate each."""
        states = {f: loaded[f] for f in flags if f in loaded}
        states |= await _load_rest(self._states, [f for f in flags if f not in loaded])
        data = await self._read_ahead(flags, states, fresh)
        for flag in flags:
            gated = self.gate(
                flag,
                fresh=flag in fresh,
                background=True,
                loaded=states.get(flag),
                data=data.get(flag),
            )
            await self._contained.run(gated, where="gate", flag=flag)

    async def _read_ahead(
        self, flags: list[str], states: dict[str, Loaded | StoreError], fresh: set[str]
    ) -> dict[str, FlagAggregates]:
        """The aggregates of each active flag of ``flags`` that its gate would read, in one
        ``read_many``; none when it fails for good (each gate then reads its own)."""
        wanted: list[tuple[str, set[int]]] = []
        for flag in flags:
            loaded = states.get(flag)
            rollout = loaded.rollout if isinstance(loaded, Loaded) else None
            if rollout is None or not rollout.phase.active:
                continue
            if flag in fresh or self._cached(flag, rollout) is None:
                wanted.append((flag, rollout.stage_flag_versions()))
        if not wanted:
            return {}
        try:
            read = await self._aggregates.read_many(wanted)
        except ControllerError as exc:
            if exc.retriable:
                raise
            return {}
        return {flag: data for (flag, _), data in zip(wanted, read, strict=True)}

    async def gate(
        self,
        flag: str,
        *,
        fresh: bool = True,
        background: bool = False,
        loaded: Loaded | StoreError | None = None,
        data: FlagAggregates | None = None,
    ) -> None:
        """Evaluate the flag's current stage and apply the verdict and the timers.

        ``fresh=False`` (a timer sweep of a flag with no new events) may reuse the aggregates
        read last time for the same stage: they cannot have changed. Most gates hold, so the
        decision is first taken on the state just loaded and only a change goes to the
        service (see :meth:`Rollouts.offer`). With ``background``, a verdict that needs the
        advisor starts a consultation and returns at once; otherwise the model is awaited here.
        ``loaded``: the flag's state as a pass just read it (else it is loaded here);
        ``data``: the aggregates of that state's stage as the pass just read them (else
        they are read here, or reused as ``fresh`` allows).
        """
        if loaded is None:
            loaded = await self._states.load(flag)
        if isinstance(loaded, StoreError):
            raise loaded
        rollout = loaded.rollout
        if rollout is None or not rollout.phase.active:
            self._seen.pop(flag, None)
            self.evidence.forget(flag)
            self._history.forget(flag)
            self._metrics.guardrails.forget(flag)
            if self._sources is not None:
                self._sources.forget(flag)
            if rollout is not None and rollout.phase is Phase.COMPLETED:
                await self._late_after_completion(flag, rollout, fresh=fresh)
            # Their timers: a stale reminder, a scheduled start, a time box's end.
            if rollout is not None and rollout.phase in (Phase.COMPLETED, Phase.PENDING):
                await self._rollouts.remind_stale(flag, rollout)
            return
        data = await self._stage_data(flag, rollout, fresh=fresh, read=data)
        now = self._now()
        verdict = await gated(rollout, data, now, self._sources, self.evidence)
        verdict = await self.passed.checked(rollout, verdict, now, fresh=fresh)
        self._metrics.guardrails.record(flag, verdict, max_flags=self._settings.max_flag_series)
        await self._history.gate(flag, rollout, verdict, now)
        waiting = verdict.evidence.incomplete  # a stuck alert names it
        events: list[Input] = [TickInput(now, self._stale_after, waiting=waiting)]
        held = await prerequisite_hold(self._states, rollout)  # no advice on a held advance
        if held is not None or not self._consultations.needs_advice(rollout, verdict, now):
            events.insert(0, GateInput(verdict, now, prerequisite=held))
        elif background:  # a final look it took is recorded first: never taken twice
            events[:0] = self._consultations.start(flag, rollout, verdict, now)
        else:
            events.insert(0, await self._consultations.with_advice(rollout, verdict, now))
        for event in events:
            await self._rollouts.offer(flag, rollout, event)
        if self._consultations.wants_opinion(flag, rollout, verdict, now):
            self._consultations.ask_opinion(flag, rollout, verdict, now)

    async def _late_after_completion(self, flag: str, rollout: Rollout, *, fresh: bool) -> None:
        """A completed flag with news: its stages tested on what was counted late."""
        now = self._now()
        late = await self.passed.late(rollout, now, fresh=fresh)
        if late is not None:
            await self._rollouts.offer(flag, rollout, GateInput(late, now))

    def _cached(self, flag: str, rollout: Rollout) -> FlagAggregates | None:
        """The aggregates read last for ``rollout``'s current stage, if any."""
        cached = self._seen.get(flag)
        if cached is not None and cached[0] == _stage_key(rollout):
            return cached[1]
        return None

    async def _stage_data(
        self, flag: str, rollout: Rollout, *, fresh: bool, read: FlagAggregates | None
    ) -> FlagAggregates:
        """The stage's aggregates: those of the last read when not ``fresh``, else ``read``
        (just read for this stage), else read now."""
        cached = None if fresh else self._cached(flag, rollout)
        if cached is not None:
            return cached
        stage = _stage_key(rollout)
        if read is None or read.flag != flag or read.versions != stage[2]:
            read = await self._aggregates.read(flag, stage[2])
        self._seen[flag] = (stage, read)
        return read


async def gated(
    rollout: Rollout,
    data: FlagAggregates,
    now: datetime,
    sources: SourceReadings | None,
    evidence: EvidenceWatch,
) -> Verdict:
    """The gate's verdict on the stage; one that would move it (advance or complete) holds
    until the stage's evidence is counted up to the broker's log ends, and one that holds
    on incomplete evidence past the stage's planned end names those too (what is behind,
    by how many records, whose): either wait is timed, and alerted once."""
    sourced = None if sources is None else sources.for_gate(rollout, now)
    counted = evidence.for_gate(rollout, now)
    verdict = evaluate(rollout, data, now, sourced, counted)
    checked = await evidence.checked(rollout, verdict.kind, now, counted)
    return verdict if checked is counted else evaluate(rollout, data, now, sourced, checked)


async def _load_rest(states: RolloutStates, flags: list[str]) -> dict[str, Loaded | StoreError]:
    """The states of ``flags`` in one read; none when it fails for good (each gate then
    loads its own, and only a damaged flag fails)."""
    if not flags:
        return {}
    try:
        return dict(zip(flags, await states.load_many(flags), strict=True))
    except ControllerError as exc:
        if exc.retriable:
            raise
        return {}


def _stage_key(rollout: Rollout) -> tuple[str, int, frozenset[int]]:
    """What the aggregates read for a rollout belong to: its stage and that stage's versions."""
    return rollout.rollout_id, rollout.stage, frozenset(rollout.stage_flag_versions())


async def prerequisite_hold(states: RolloutStates, rollout: Rollout) -> str | None:
    """Why the flags ``rollout`` requires hold its forward moves; None when none does.

    The chain of parents is read a level at a time, at most as deep as a chain may be;
    a parent that cannot be read counts as unknown (not served).
    """
    if not rollout.plan.requires:
        return None
    held = {rollout.flag: rollout}
    wanted = {parent_key(rollout.flag, needed.flag) for needed in rollout.plan.requires}
    for _ in range(MAX_PREREQUISITE_DEPTH):
        wanted -= held.keys()
        if not wanted:
            break
        keys = sorted(wanted)
        loaded = await states.load_many(keys)
        wanted = set()
        for key, one in zip(keys, loaded, strict=True):
            parent = None if isinstance(one, StoreError) else one.rollout
            if parent is not None:
                held[key] = parent
                wanted |= {parent_key(key, needed.flag) for needed in parent.plan.requires or ()}
    return prerequisite_wait(rollout, held)
