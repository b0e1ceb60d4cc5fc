"""The flag-backend sync: make Unleash serve what each rollout decided, and notice people (#14).

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
round trip of the decision, not at the next sweep.

A slow flag never delays another (#23). Each flag is synced by a task of its
own, which reads the flag's state when it syncs it (a sweep's one pipelined
read is used only if no decision was published since), so a nudge never
waits behind a pass. The admin API gets at most ``max_concurrent_requests``
calls at once, and when all are taken, turning an environment off (kill,
rollback, abort) gets the next one before any routine read. Each call has an
overall deadline in the admin client: an answer dripping in a byte at a time
fails within ``request_timeout_seconds`` and counts as unreachable.

People: the sync records (Redis, next to the rollout state) what it applied
last and, while writing, what it is applying. When Unleash serves something
that is neither, a person changed it: a running rollout is paused with an
alert naming the change (the machine's ``backend_drift`` pause), and nothing
is written until the rollout moves on (the operator resumes, rolls back or
kills). The sync never fights a person.

Unleash unreachable: one ``backend_unreachable`` alert when a flag gets no
answer (a connection refused, a deadline passed, an answer that is no
Unleash answer), one ``backend_recovered`` alert once every such flag got
one again.

Metrics (:class:`~controller.daemon.metrics.BackendMetrics`): each pass over a
flag that had something to do is counted by outcome, each drift found once,
the ``rollout_backend_unreachable`` gauge is 1 between the two alerts, and a
write that lands observes the time since the decision it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from controller.backoff import DEFAULT_RETRY
from controller.core.errors import ControllerError, StoreError
from controller.core.health import drift_alerted
from controller.core.rollout import (
    BackendDriftInput,
    Input,
    Phase,
    RaiseAlert,
    Rollout,
)
from controller.core.serving import Applied, Serving, Target, Verdict, desired, reconcile
from controller.daemon.metrics import UNANSWERED_CAUSES, BackendMetrics
from controller.daemon.rendering import render_alert
from controller.daemon.slots import PrioritySlots
from controller.ports import AppliedRecords, FlagBackend, Loaded, Outputs, RolloutStates
from controller.retrying import Retry
from controller.settings import RetrySettings, TopicSettings, UnleashSettings

log = structlog.get_logger("controller.daemon.backends")
Apply = Callable[[str, Input], Awaitable[None]]
SAFETY, ROUTINE = 0, 1
"""Slot priorities: turning an environment off goes first."""


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
        self._backend, self._records, self._states = backend, records, states
        self._settings, self._topics, self._outputs = settings, topics, outputs
        self._owns, self._now = owns, clock
        self._metrics = metrics or BackendMetrics(CollectorRegistry())
        self._apply: Apply | None = None
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._retrying = Retry(self._stopping, retry)
        self._slots = PrioritySlots(settings.max_concurrent_requests)
        self._workers: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self._generation: dict[str, int] = {}
        self._swept: dict[str, tuple[int, Loaded | ControllerError]] = {}
        self._unanswered: dict[str, str] = {}
        self._failing: set[str] = set()
        self.passes = 0
        """Completed sweeps, for tests and readiness."""

    def attach(self, apply: Apply) -> None:
        """The engine's ``apply``: how the sync pauses a rollout a person interfered with."""
        self._apply = apply

    def nudge(self, flag: str) -> None:
        """``flag``'s state changed: compare it now rather than at the next sweep."""
        self._generation[flag] = self._generation.get(flag, 0) + 1  # what a sweep read is stale
        self._dirty.add(flag)
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Sweep every flag now and every ``sync_interval_seconds``; nudged flags at once."""
        interval = self._settings.sync_interval_seconds
        next_sweep = 0.0
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                flags, self._dirty = self._dirty, set()
                if time.monotonic() >= next_sweep:
                    flags |= await self._sweep()
                    next_sweep = time.monotonic() + interval
                    self.passes += 1
                for flag in sorted(f for f in flags if self._owns(f)):
                    self._start(flag)
                if not self._dirty:
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
        flags = sorted(f for f in every if self._owns(f))
        generations = [self._generation.get(f, 0) for f in flags]
        try:
            loaded: list[Loaded | ControllerError] = [*await self._states.load_many(flags)]
        except ControllerError:
            loaded = []  # each task loads its own
        for flag, generation, found in zip(flags, generations, loaded, strict=False):
            self._swept[flag] = (generation, found)
        for gone in set(self._unanswered) - set(flags):  # no longer this instance's to sync
            await self._answered(gone)
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
        delay = 0.2
        try:
            while not self._stopping.is_set():
                again.clear()
                if await self._attempt(flag):
                    if not again.is_set():
                        return
                    delay = 0.2
                    continue
                with contextlib.suppress(TimeoutError):  # a nudge retries at once
                    await asyncio.wait_for(again.wait(), timeout=delay)
                delay = min(delay * 2, 5.0)
        finally:
            del self._workers[flag]

    async def _attempt(self, flag: str) -> bool:
        """Sync ``flag`` once; False if it is to be tried again (Unleash or Redis unreachable)."""
        swept = self._swept.pop(flag, None)
        fresh = swept is not None and swept[0] == self._generation.get(flag, 0)
        try:
            asked = await self.sync(flag, swept[1] if swept is not None and fresh else None)
        except ControllerError as exc:
            self._metrics.wrote("failed")
            if not exc.retriable:
                await self._failed(flag, exc)
                return True
            if not isinstance(exc, StoreError):  # Redis has its own alarms
                cause = getattr(exc, "cause", "")
                cause = cause if cause in UNANSWERED_CAUSES else "refused"
                self._metrics.unanswered.labels(cause).inc()
                await self._unreachable(flag, str(exc))
            return False
        except Exception as exc:  # confined to this flag, reported once
            self._metrics.wrote("failed")
            await self._failed(flag, exc)
            return True
        self._failing.discard(flag)
        if asked:
            await self._answered(flag)
        return True

    # -- one flag --------------------------------------------------------------------

    async def sync(self, flag: str, found: Loaded | ControllerError | None = None) -> bool:
        """Compare ``flag``'s desired and actual serving once, and act on the difference.

        ``found`` is the flag's state as a sweep loaded it (or the error that
        loading it raised); without it, the state is loaded here. Returns whether
        Unleash was asked (and answered): a flag it does not serve, or one on
        hold, is no sign that Unleash is back.
        """
        if found is None:
            found = await self._states.load(flag)
        if isinstance(found, ControllerError):
            raise found
        rollout = found.rollout
        unleash = rollout.plan.unleash if rollout is not None else None
        if rollout is None or unleash is None:
            return False
        target = Target.of(
            unleash,
            project=self._settings.project,
            environment=self._settings.environment,
            stickiness=self._settings.stickiness,
        )
        want = desired(rollout, target)
        record = await self._records.get(flag)
        if record is not None and record.rollout_id != rollout.rollout_id:
            record = None
        if want is None:
            return False
        if record is not None and record.held_version == rollout.flag_version:
            self._metrics.wrote("held")
            return False
        async with self._slots.slot(ROUTINE if want.enabled else SAFETY):
            actual = await self._backend.read(target)
            verdict, changes = reconcile(rollout, want, actual, record, target)
            if verdict is Verdict.RECORD:
                await self._records.put(flag, Applied(rollout.rollout_id, applied=want))
                self._metrics.wrote("in_place")
            elif verdict is Verdict.WRITE:
                await self._write(flag, rollout, target, want=want, actual=actual, record=record)
        if verdict is Verdict.DRIFT:
            await self._drifted(flag, rollout, target, changes, actual)
        return True

    async def _write(
        self,
        flag: str,
        rollout: Rollout,
        target: Target,
        *,
        want: Serving,
        actual: Serving,
        record: Applied | None,
    ) -> None:
        """Record the intent, write, record the result: a crash between is no person's change."""
        if record is None:
            base = None
        elif record.held_version is not None:
            base = actual  # the person's change, accepted when the rollout moved on
        else:
            base = record.applied
        await self._records.put(flag, Applied(rollout.rollout_id, applied=base, intent=want))
        await self._backend.write(target, want, actual, flag=flag)
        await self._records.put(flag, Applied(rollout.rollout_id, applied=want))
        self._metrics.applied((self._now() - rollout.updated_at).total_seconds())
        log.info(
            "backend_applied",
            flag=flag,
            feature=target.feature,
            environment=target.environment,
            enabled=want.enabled,
            percent=want.percent,
            version=rollout.flag_version,
        )

    async def _drifted(
        self, flag: str, rollout: Rollout, target: Target, changes: list[str], actual: Serving
    ) -> None:
        """Let the machine act on a running rollout (pause, roll back or warn, as the plan's
        policy says) or alert here; hold every write until the rollout moves on."""
        what = f"Unleash feature {target.feature} ({target.environment}): " + "; ".join(changes)
        details: dict[str, Any] = {
            "feature": target.feature,
            "project": target.project,
            "environment": target.environment,
            "changes": changes,
            "serving": actual.to_json(),
        }
        log.warning("backend_drift", flag=flag, changes=changes)
        self._metrics.drifts.inc()
        alerted = False
        if rollout.phase is Phase.RUNNING and self._apply is not None:
            drift = BackendDriftInput(f"changed by hand: {what}", self._now(), details)
            await self._apply(flag, drift)
            after = (await self._states.load(flag)).rollout or rollout
            # The machine's transition raised the alert, unless the rollout moved meanwhile.
            alerted = drift_alerted(rollout, after)
            rollout = after
        if not alerted:
            summary = f"{flag}: changed by hand, not overwritten: {what}"
            await self._alert(flag, RaiseAlert("backend_drift", "warning", summary, details))
        held = Applied(rollout.rollout_id, held_version=rollout.flag_version, held_what=what[:500])
        await self._records.put(flag, held)

    # -- reporting -------------------------------------------------------------------

    async def _unreachable(self, flag: str, error: str) -> None:
        """``flag`` got no answer; the first such flag raises the outage."""
        first = not self._unanswered
        self._unanswered[flag] = error
        if not first:
            return
        self._metrics.unreachable.set(1)
        log.warning("backend_unreachable", flag=flag, error=error)
        summary = f"Unleash cannot be reached; its flags keep their last state: {error}"
        details = {"flag": flag, "error": error[:500]}
        await self._alert(
            None, RaiseAlert("backend_unreachable", "critical", summary[:500], details)
        )

    async def _answered(self, flag: str) -> None:
        """``flag`` got an answer (or is no longer synced here); the last one ends the outage."""
        error = self._unanswered.pop(flag, None)
        if error is None or self._unanswered:
            return
        self._metrics.unreachable.set(0)
        log.info("backend_recovered")
        summary = "Unleash answers again; the decisions made meanwhile are being applied"
        details = {"error": error[:500]}
        await self._alert(None, RaiseAlert("backend_recovered", "info", summary, details))

    async def _failed(self, flag: str, exc: Exception) -> None:
        why = f"{type(exc).__name__}: {exc}"[:500]
        log.error("backend_sync_failed", flag=flag, error=why, exc_info=exc)
        if flag in self._failing:
            return
        self._failing.add(flag)
        summary = f"the Unleash sync of {flag} failed and is retried each sweep: {why}"
        await self._alert(flag, RaiseAlert("input_failed", "critical", summary[:500]))

    async def _alert(self, flag: str | None, action: RaiseAlert) -> None:
        message = render_alert(flag, action, self._now(), self._topics)
        try:
            await self._retrying(
                lambda: self._outputs.publish([(message.topic, message.key, message.value)]),
                "backend alert",
            )
        except ControllerError as exc:
            log.warning("alert_not_published", error=str(exc)[:500])
