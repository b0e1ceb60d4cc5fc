"""The flag-backend sync: make Unleash serve what each rollout decided, and notice people.

Level-triggered, not a queue of writes. A rollout's saved state (in Redis,
saved with compare-and-set before anything is published) already is the
desired state, so the sync does not keep its own list of pending API calls:
for a flag it computes what Unleash should serve (``core.serving.desired``),
reads back what Unleash serves, and writes only the difference. That gives
the outbox's guarantees by construction: a write is retried with back-off
until Unleash has it; it is idempotent (a write that is already in place is
not repeated); and nothing is lost across a crash, because at start-up, and
every ``sync_interval_seconds``, every flag is compared again. Several
decisions made while Unleash was down collapse into the last one, which is
the one that must be served.

Latency: the engine publishes a flag's new state right after saving it; the
:class:`NudgingOutputs` wrapper around its outputs hands the flag to the sync
at that moment, so a rollback or kill reaches Unleash within one admin API
round trip of the decision, not at the next sweep. A segment's change
(:meth:`BackendSync.segment_changed`, told by the segment service) starts a
sweep at once, which reads the segments again and rewrites the rings that
name it.

A slow flag never delays another. Each flag is synced by a task of its
own, which reads the flag's state when it syncs it (a sweep's one pipelined
read is used only if no decision was published since), so a nudge never
waits behind a pass. The admin API gets at most ``max_concurrent_requests``
calls at once, and when all are taken, turning an environment off (kill,
rollback, abort) gets the next one before any routine read. Each call has an
overall deadline in the admin client: an answer dripping in a byte at a time
fails within ``request_timeout_seconds`` and counts as unreachable.

Here: the sweep and each flag's task, retried with the one retry policy
(``settings.retry``) while Unleash fails, a nudge retrying at once. One
flag's comparison, its writes and a person's change found there are
:class:`~controller.daemon.backends.writes.FlagSync`'s; the outage and failure
alerts are :class:`~controller.daemon.backends.alerts.BackendAlerts`'.

Metrics (:class:`~controller.daemon.metrics.BackendMetrics`): each pass over a
flag that had something to do is counted by outcome, each drift found once,
the ``rollout_backend_unreachable`` gauge is 1 between the
``backend_unreachable`` and ``backend_recovered`` alerts, and a write that
lands observes the time since the decision it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from controller.core.common import ControllerError, StoreError
from controller.daemon.backends.alerts import BackendAlerts
from controller.daemon.backends.environments import KnownEnvironments
from controller.daemon.backends.slots import PrioritySlots
from controller.daemon.backends.writes import Apply, FlagSync, SegmentSource
from controller.daemon.metrics import UNANSWERED_CAUSES, BackendMetrics
from controller.kit.backoff import DEFAULT_RETRY, retry_backoff
from controller.ports import AppliedRecords, FlagBackend, Loaded, Outputs, RolloutStates
from controller.process import Retry
from controller.settings import RetrySettings, TopicSettings, UnleashSettings


class NudgingOutputs:
    """The engine's outputs; every flag state published hands its flag to the sync at once."""

    def __init__(self, inner: Outputs, *, flag_state_topic: str, nudge: Callable[[str], None]):
        self._inner, self._topic, self._nudge = inner, flag_state_topic, nudge

    async def publish(self, messages: list[tuple[str, str, bytes]]) -> None:
        await self._inner.publish(messages)
        for topic, key, _ in messages:
            if topic == self._topic:
                self._nudge(key)


class BackendSync:
    """Keeps Unleash serving what the rollouts of the flags this instance owns decided."""

    def __init__(
        self,
        *,
        backend: FlagBackend,
        records: AppliedRecords,
        states: RolloutStates,
        settings: UnleashSettings,
        topics: TopicSettings,
        outputs: Outputs,
        owns: Callable[[str], bool] = lambda _flag: True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: BackendMetrics | None = None,
        retry: RetrySettings = DEFAULT_RETRY,
    ) -> None:
        self._states, self._settings, self._owns, self._retry = states, settings, owns, retry
        self._metrics = metrics or BackendMetrics(CollectorRegistry())
        self._dirty: set[str] = set()
        self._sweep_due = False
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._retrying = Retry(self._stopping, retry)
        self.alerts = BackendAlerts(
            outputs=outputs,
            topics=topics,
            retrying=self._retrying,
            metrics=self._metrics,
            clock=clock,
        )
        """The outage and failure alerts."""
        self.flags = FlagSync(
            backend=backend,
            records=records,
            states=states,
            settings=settings,
            slots=PrioritySlots(settings.max_concurrent_requests),
            alerts=self.alerts,
            metrics=self._metrics,
            clock=clock,
        )
        """One flag's comparison and writes."""
        self.environments = KnownEnvironments(backend.environments)
        """The environments the platform has, read when a pipeline needs them."""
        self._workers: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self._generation: dict[str, int] = {}
        self._swept: dict[str, tuple[int, Loaded | ControllerError]] = {}
        self.passes = 0
        """Completed sweeps, for tests and readiness."""

    def attach(self, apply: Apply, segments: SegmentSource | None = None) -> None:
        """The engine's ``apply``: how the sync pauses a rollout a person interfered with;
        and where each sweep reads the segments rings name (``SegmentReads.held``)."""
        self.flags.attach(apply, segments)

    def nudge(self, flag: str) -> None:
        """``flag``'s state changed: compare it now rather than at the next sweep."""
        self._generation[flag] = self._generation.get(flag, 0) + 1  # what a sweep read is stale
        self._dirty.add(flag)
        self._wake.set()

    def segment_changed(self, name: str) -> None:
        """Segment ``name`` changed: sweep now, so rings naming it are rewritten at once.

        A sweep reads the changed segments again and compares every flag; a
        change is rare, so which plans name the segment is not worked out here.
        """
        self._sweep_due = True
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def sync(self, flag: str, found: Loaded | ControllerError | None = None) -> bool:
        """Compare ``flag``'s desired and actual serving once (:meth:`FlagSync.sync`)."""
        return await self.flags.sync(flag, found)

    async def run(self) -> None:
        """Sweep every flag now and every ``sync_interval_seconds``; nudged flags at once."""
        interval = self._settings.sync_interval_seconds
        next_sweep = 0.0
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                flags, self._dirty = self._dirty, set()
                if self._sweep_due or time.monotonic() >= next_sweep:
                    self._sweep_due = False
                    flags |= await self._sweep()
                    next_sweep = time.monotonic() + interval
                    self.passes += 1
                for flag in sorted(f for f in flags if self._owns(f)):
                    self._start(flag)
                if not self._dirty and not self._sweep_due:
                    await self._sleep(max(0.0, next_sweep - time.monotonic()))
        finally:
            workers = [task for task, _ in self._workers.values()]
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _sweep(self) -> set[str]:
        """Every flag this instance owns, each state loaded in one round trip for its task."""
        every = await self._retrying(self._states.flags, "backend sweep") or set()
        await self.flags.reload_segments()
        flags = sorted(f for f in every if self._owns(f))
        generations = [self._generation.get(f, 0) for f in flags]
        try:
            loaded: list[Loaded | ControllerError] = [*await self._states.load_many(flags)]
        except ControllerError:
            loaded = []  # each task loads its own
        for flag, generation, found in zip(flags, generations, loaded, strict=False):
            self._swept[flag] = (generation, found)
        for gone in self.alerts.unanswered - set(flags):  # no longer this instance's to sync
            await self.alerts.answered(gone)
        return set(flags)

    def _start(self, flag: str) -> None:
        """Sync ``flag`` in its own task, or have its running task sync it once more."""
        if flag in self._workers:
            self._workers[flag][1].set()
            return
        again = asyncio.Event()
        task = asyncio.create_task(self._worker(flag, again), name=f"backend-sync:{flag}")
        self._workers[flag] = (task, again)

    async def _worker(self, flag: str, again: asyncio.Event) -> None:
        """Sync until done and not nudged meanwhile; retry with back-off while Unleash fails."""
        backoff = retry_backoff(again, self._retry)  # a nudge ends the wait: it retries at once
        try:
            while not self._stopping.is_set():
                again.clear()
                if await self._attempt(flag):
                    if not again.is_set():
                        return
                    backoff.reset()
                    continue
                await backoff.wait()
        finally:
            del self._workers[flag]

    async def _attempt(self, flag: str) -> bool:
        """Sync ``flag`` once; False if it is to be tried again (Unleash or Redis unreachable)."""
        swept = self._swept.pop(flag, None)
        fresh = swept is not None and swept[0] == self._generation.get(flag, 0)
        try:
            asked = await self.flags.sync(flag, swept[1] if swept is not None and fresh else None)
        except ControllerError as exc:
            self._metrics.wrote("failed")
            if not exc.retriable:
                await self.alerts.failed(flag, exc)
                return True
            if not isinstance(exc, StoreError):  # Redis has its own alarms
                cause = getattr(exc, "cause", "")
                cause = cause if cause in UNANSWERED_CAUSES else "refused"
                self._metrics.unanswered.labels(cause).inc()
                await self.alerts.unreachable(flag, str(exc))
            return False
        except Exception as exc:  # confined to this flag, reported once
            self._metrics.wrote("failed")
            await self.alerts.failed(flag, exc)
            return True
        self.alerts.synced(flag)
        if asked:
            await self.alerts.answered(flag)
        return True
