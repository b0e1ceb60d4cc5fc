"""What OpenTelemetry's flag evaluations are translated against: each flag's rules and versions.

The translator (:class:`controller.core.telemetry.Translator`) asks one
question per evaluation: what does the controller know of this flag?
:class:`FlagDirectory` answers it (its :meth:`~FlagDirectory.lookup` is the
translator's ``Lookup``) from the rollouts, held in memory and read again in
the background once ``max_age`` seconds old, as OFREP's snapshot of the flag
states is: a flag no rollout published is unknown (``None``).

Each flag's :class:`~controller.core.telemetry.FlagRules` carry

* the plan's ``telemetry`` settings (which variant is which arm, the unit's
  attribute, the HTTP status that is an error, the named conversions), or
  the defaults without them (variants ``treatment`` and ``control``, as
  OFREP serves them; errors from 500);
* the flag version in force now, and a timeline of ``(flag_version,
  since_ms)``: when each version came into force, for evaluations that carry
  no version (:func:`timeline_after`).

When a version came into force is read off the rollout: the first version of
a stage (a start, an advance, a watch) came with the stage, at
``stage_started_at``; a later one of the same stage (a pause, a resume, a
rollback, a kill, a completion) at the save that made it, which is the
rollout's ``updated_at`` when the directory first sees that version (a later
save that changed no version would move ``updated_at`` on; seen within
``max_age`` of the change, that can only make it later, never earlier, by at
most the time between the two saves). Versions seen once are kept, so a
timeline grows as the directory watches the flag, up to
:data:`MAX_VERSIONS` entries (the oldest dropped).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import structlog

from controller.core.common import ControllerError
from controller.core.rollouts import FAILURE_METRICS, Rollout
from controller.core.telemetry import FlagRules
from controller.core.telemetry import rules_of as telemetry_rules
from controller.kit.deadlines import deadline

RolloutSource = Callable[[], Awaitable[Sequence[Rollout]]]
"""Every published rollout, as stored now."""
Timeline = tuple[tuple[int, int], ...]
MAX_VERSIONS = 64
"""The most versions one flag's timeline keeps (the oldest dropped first)."""
MIN_GAP_SECONDS = 0.5
"""The least time between two reads asked for by :meth:`FlagDirectory.read_since`: apps
that evaluate flags no rollout publishes cost at most two reads a second."""
READ_DEADLINE_SECONDS = 2.0
"""The most one read asked for by :meth:`FlagDirectory.read_since` may hold the exports that
wait for it; past it the flags held answer."""
log = structlog.get_logger("controller.daemon.registries.flag_directory")


class FlagDirectory:
    """Each published flag's :class:`FlagRules`; the first :meth:`fresh` waits for the first
    load, later ones start a reload in the background once ``max_age`` seconds old."""

    def __init__(
        self,
        load: RolloutSource,
        *,
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._load, self._max_age, self._clock, self._wall = load, max_age, clock, wall
        self._rules: dict[str, FlagRules] | None = None
        self._loaded_at = 0.0
        self._read_from_ms = 0
        """When (wall clock, ms) the read the rules held came from began."""
        self._first = asyncio.Lock()
        self._asked = asyncio.Lock()
        self._reload: asyncio.Task[None] | None = None

    async def fresh(self) -> None:
        """Have the flags loaded (the first call waits: a store error is raised), and reload
        them in the background once they are ``max_age`` old."""
        if self._rules is None:
            async with self._first:
                if self._rules is None:
                    await self._refresh()
        elif self._clock() - self._loaded_at >= self._max_age and self._reload is None:
            self._reload = asyncio.create_task(self._background(), name="flag-directory")

    async def read_since(self, at_ms: int) -> None:
        """Have flags read by a read that began after ``at_ms`` (wall clock; a time to come
        is taken as now), waiting for it; reads are shared, and begin
        :data:`MIN_GAP_SECONDS` apart at least. A store error, or a read slower than
        :data:`READ_DEADLINE_SECONDS`, leaves the flags held.

        A rollout is stored before its flag state is published, so an evaluation an app
        made at ``at_ms`` of a flag the flags read since do not know was of no rollout.
        """
        at_ms = min(at_ms, int(self._wall() * 1000))
        async with self._asked:
            if self._read_from_ms > at_ms:
                return
            wait = self._read_from_ms / 1000 + MIN_GAP_SECONDS - self._wall()
            try:
                if wait > 0:
                    await asyncio.sleep(wait)
                async with deadline(READ_DEADLINE_SECONDS, "the flags' read"):
                    await self._refresh()
            except ControllerError as exc:
                log.warning("flag_directory_read_failed", error=str(exc)[:300])

    def lookup(self, flag: str) -> FlagRules | None:
        """What the controller knows of ``flag``; None when no rollout published it."""
        return None if self._rules is None else self._rules.get(flag)

    @property
    def flags(self) -> int:
        """How many flags are known."""
        return 0 if self._rules is None else len(self._rules)

    async def close(self) -> None:
        """Stop a reload under way."""
        task = self._reload
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _refresh(self) -> None:
        began = int(self._wall() * 1000)
        rollouts = await self._load()
        if began < self._read_from_ms:
            return  # a read that began later came back first: its flags stay
        held = self._rules or {}
        self._rules = {
            r.flag: rules_of(r, held.get(r.flag)) for r in rollouts if r.flag_version > 0
        }
        self._loaded_at = self._clock()
        self._read_from_ms = max(self._read_from_ms, began)

    async def _background(self) -> None:
        try:
            await self._refresh()
        except Exception as exc:
            # Exports go on being translated against the flags held; the next tries again.
            self._loaded_at = self._clock()
            log.warning("flag_directory_reload_failed", error=repr(exc)[:300])
        finally:
            self._reload = None


def rules_of(rollout: Rollout, before: FlagRules | None = None) -> FlagRules:
    """``rollout``'s flag as the translator reads it, its timeline extended from ``before``."""
    timeline = timeline_after(before.timeline if before else (), rollout)
    failures = any(g.metric in FAILURE_METRICS for g in rollout.plan.guardrails)
    return telemetry_rules(
        rollout.flag, rollout.plan.telemetry, rollout.flag_version, timeline, failures=failures
    )


def timeline_after(known: Timeline, rollout: Rollout, *, keep: int = MAX_VERSIONS) -> Timeline:
    """``known`` with the versions ``rollout`` shows that it lacks, in ascending order.

    The first version of the current stage came into force at ``stage_started_at``;
    the current version, when it is another, at ``updated_at``. A version's start is
    never before an older version's (a clock stepped back, a start unknown until now).
    """
    found = dict(known)
    stage = rollout.stage_versions.get(rollout.stage, [])
    if stage and stage[0] not in found:
        found[stage[0]] = _ms(rollout.stage_started_at)
    if rollout.flag_version not in found:
        started = stage[:1] == [rollout.flag_version]
        at = rollout.stage_started_at if started else rollout.updated_at
        found[rollout.flag_version] = _ms(at)
    ordered: list[tuple[int, int]] = []
    for version, since in sorted(found.items()):
        floor = ordered[-1][1] if ordered else since
        ordered.append((version, max(since, floor)))
    return tuple(ordered[-keep:])


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)
