"""One flag's sync with Unleash: compare, write the difference, or notice a person.

For a flag it computes what Unleash should serve (``core.serving.desired``),
reads back what Unleash serves, and writes only the difference, so a write
that is already in place is not repeated. Each call to the admin API holds
one of the sync's slots (:class:`~controller.daemon.backends.slots.PrioritySlots`);
turning an environment off (kill, rollback, abort) gets the next one before
any routine read.

People: the sync records (Redis, next to the rollout state) what it applied
last and, while writing, what it is applying. When Unleash serves something
that is neither, a person changed it: a running rollout is paused with an
alert naming the change (the machine's ``backend_drift`` pause), and nothing
is written until the rollout moves on (the operator resumes, rolls back or
kills). The sync never fights a person.

Segments a ring names are written inline (``core.unleash_rules``) from the
segments the last sweep read: a changed segment changes what is desired, not
what Unleash serves, so it is rewritten at the sweep its change starts, never
taken for a person's change. One that cannot be written (not held, a list too long for a
constraint) fails the flag's sync: alerted once, Unleash left as it is.

A plan's prerequisites are the feature's dependencies, named by each parent's
feature as its rollout says (``core.serving.dependencies``): part of what is
desired and read back, so a person's change to them is drift like any other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog

from controller.core.common import ConfigError, ControllerError
from controller.core.machine import drift_alerted
from controller.core.rollouts import (
    BackendDriftInput,
    Input,
    Phase,
    RaiseAlert,
    Rollout,
    UnleashTarget,
)
from controller.core.rules import NO_HELD_SEGMENTS, HeldSegments
from controller.core.serving import (
    Applied,
    Dependency,
    Serving,
    Target,
    Verdict,
    dependencies_of,
    desired,
    reconcile,
)
from controller.core.wire import JsonObject, RolloutEvidence, parent_key
from controller.daemon.backends.alerts import BackendAlerts
from controller.daemon.backends.slots import PrioritySlots
from controller.daemon.metrics import BackendMetrics
from controller.ports import AppliedRecords, FlagBackend, Loaded, RolloutStates
from controller.settings import UnleashSettings

log = structlog.get_logger("controller.daemon.backends.sync")
Apply = Callable[[str, Input], Awaitable[None]]
SegmentSource = Callable[[HeldSegments], Awaitable[HeldSegments]]
"""The segments held now, given those held before (only what changed is read again)."""
SAFETY, ROUTINE = 0, 1
"""Slot priorities: turning an environment off goes first."""


class FlagSync:
    """Makes Unleash serve what one flag's rollout decided, or holds off for a person."""

    def __init__(
        self,
        *,
        backend: FlagBackend,
        records: AppliedRecords,
        states: RolloutStates,
        settings: UnleashSettings,
        slots: PrioritySlots,
        alerts: BackendAlerts,
        metrics: BackendMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self._backend, self._records, self._states = backend, records, states
        self._settings, self._slots, self._alerts = settings, slots, alerts
        self._metrics, self._now = metrics, clock
        self._apply: Apply | None = None
        self.segments: HeldSegments = NO_HELD_SEGMENTS
        """The segments rings name, as last read: written inline."""
        self._segments: SegmentSource | None = None

    def attach(self, apply: Apply, segments: SegmentSource | None = None) -> None:
        """The engine's ``apply``: how the sync pauses a rollout a person interfered with;
        and where the segments that rings name are read (``SegmentReads.held``)."""
        self._apply, self._segments = apply, segments

    async def reload_segments(self) -> None:
        """Read again the segments that changed (each sweep, and before a segment is missed)."""
        if self._segments is None:
            return
        try:
            self.segments = await self._segments(self.segments)
        except Exception as exc:  # the segments held stay; the next sweep tries again
            log.warning("backend_segments_reload_failed", error=repr(exc)[:300])

    def _desired(
        self, rollout: Rollout, target: Target, dependencies: tuple[Dependency, ...]
    ) -> Serving | None:
        return desired(rollout, target, self.segments, dependencies)

    async def _dependencies(
        self, flag: str, rollout: Rollout, target: Target
    ) -> tuple[Dependency, ...]:
        """The dependencies the plan's prerequisites are written as, each parent's feature
        read from its rollout. A parent not served from the target's Unleash project and
        environment (the start refuses it; a parent started again elsewhere since) fails the
        flag's sync: alerted once, nothing written."""
        requires = rollout.plan.requires or []
        if not requires or not (rollout.phase.active or rollout.phase is Phase.COMPLETED):
            return ()
        features: dict[str, str] = {}
        for needed in requires:
            parent = (await self._states.load(parent_key(flag, needed.flag))).rollout
            served = parent.plan.unleash if parent is not None else None
            place = None if served is None else self._place(served)
            if served is None or place != (target.project, target.environment):
                raise ControllerError(
                    f"{flag} requires {needed.flag}, which is not served by Unleash project"
                    f" {target.project}, environment {target.environment}: its dependency"
                    f" cannot be written to feature {target.feature}"
                )
            features[needed.flag] = served.feature
        return dependencies_of(requires, features)

    def _place(self, served: UnleashTarget) -> tuple[str, str]:
        """The project and environment a plan's Unleash target is served from."""
        return (
            served.project or self._settings.project,
            served.environment or self._settings.environment,
        )

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
            targeted=rollout.plan.targeted,
        )
        dependencies = await self._dependencies(flag, rollout, target)
        try:
            want = self._desired(rollout, target, dependencies)
        except ConfigError:  # a segment made or changed since the sweep: read them again
            await self.reload_segments()
            want = self._desired(rollout, target, dependencies)
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
        details: JsonObject = {
            "feature": target.feature,
            "project": target.project,
            "environment": target.environment,
            "changes": [*changes],
            "serving": actual.to_json(),
        }
        log.warning("backend_drift", flag=flag, changes=changes)
        self._metrics.drifts.inc()
        alerted = False
        if rollout.phase is Phase.RUNNING and self._apply is not None:
            said = RolloutEvidence.model_validate(details)
            drift = BackendDriftInput(f"changed by hand: {what}", self._now(), said)
            await self._apply(flag, drift)
            after = (await self._states.load(flag)).rollout or rollout
            # The machine's transition raised the alert, unless the rollout moved meanwhile.
            alerted = drift_alerted(rollout, after)
            rollout = after
        if not alerted:
            summary = f"{flag}: changed by hand, not overwritten: {what}"
            await self._alerts.alert(flag, RaiseAlert("backend_drift", "warning", summary, details))
        held = Applied(rollout.rollout_id, held_version=rollout.flag_version, held_what=what[:500])
        await self._records.put(flag, held)
