"""The rollouts service: the one writer of rollouts, around the pure core.

Every change to a rollout goes through :meth:`Rollouts.apply`: commands and
their refusals, monitor alerts, gate verdicts and timers, the advisor's
consultations, and a person's change on the flag platform. For every input the
order is the same (an outbox; see docs/architecture.md, *Exactly once*):

1. load the flag's rollout and its revision;
2. decide: ``machine.step(state, input) -> (new_state, actions)``;
3. save the new state and the messages its actions imply in one atomic
   compare-and-set (a conflict reloads and decides again);
4. publish the saved messages and wait for the broker; only then drop them
   from the outbox. A crash between 3 and 4 republishes them at start-up;
   consumers deduplicate by message id.

One input of a flag is decided at a time (a lock per flag); the
compare-and-set guards against another instance. The team's release windows
(``engine.windows_file``) join every gate, timer and command here, the one
place each input passes, for a plan that names no windows of its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from controller.core.common import ControllerError, StoreError, split
from controller.core.machine import parent_killed, start_problem, step
from controller.core.rollouts import (
    CommandInput,
    GateInput,
    Input,
    KeysRevokedInput,
    Phase,
    Plan,
    PublishFlagState,
    RecordDecision,
    Rollout,
    TickInput,
    Window,
)
from controller.core.wire import CommandAction, parent_key
from controller.daemon.metrics import Metrics
from controller.daemon.outputs import Outbox, render
from controller.daemon.rollouts.containment import Containment
from controller.daemon.rollouts.history import Recorder
from controller.ports import Loaded, RolloutStates, SaveOutcome, StateWrite
from controller.settings import TopicSettings

log = structlog.get_logger("controller.daemon.rollouts.rollouts")

MAX_CONFLICTS = 10
"""Compare-and-set conflicts in a row after which an input fails (another writer loops)."""


class VersionFloorSource(Protocol):
    """The highest version the flag-state and decisions topics have seen for a flag: a
    rollout started on a flag the store does not know numbers its versions above it."""

    async def floor(self, flag: str) -> int: ...
    def saw(self, flag: str, version: int) -> None:
        """``flag`` was saved at ``version`` since the floors were read."""

    def forget(self) -> None:
        """Read the floors again for the next one asked for (the store lost its data)."""


class Rollouts:
    """Decides each input for a flag, saves the result with its outbox, publishes it."""

    def __init__(
        self,
        *,
        states: RolloutStates,
        outbox: Outbox,
        metrics: Metrics,
        history: Recorder,
        topics: TopicSettings,
        keep_command_ids: timedelta,
        stale_after: timedelta,
        clock: Callable[[], datetime],
        team_windows: tuple[Window, ...] = (),
        floors: VersionFloorSource | None = None,
    ) -> None:
        """``floors``: where a start on a flag the store does not know learns the versions
        the topics have seen for it (None: it numbers from 1)."""
        self._states, self._outbox, self._topics = states, outbox, topics
        self.floors = floors
        """Where a start on a flag the store does not know learns its floor."""
        self._metrics, self._history = metrics, history
        self._keep_ms = int(keep_command_ids.total_seconds() * 1000)
        self._stale_after, self._now = stale_after, clock
        self.team_windows = team_windows
        """The team's release windows, for every plan that names none."""
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @property
    def undrained(self) -> list[str]:
        """Flags whose messages were saved but not published yet (their drain failed)."""
        return sorted(self._outbox.undrained)

    async def apply(
        self, flag: str, event: Input, *, delivery: str = "", seen: Rollout | None = None
    ) -> None:
        """Decide ``event`` for ``flag``, save the result with its outbox, publish it.

        An authenticated command is recorded as applied with the state it
        changes, and with ``delivery``, the record it was read from; a command
        already applied changes nothing and publishes nothing again. Nothing
        is saved when ``event`` changes nothing. With ``seen``, the state ``event`` was
        decided on, ``event`` is dropped once the stored state is at another stage or flag
        version: a gate's verdict on a stage an operator or another gate has since moved
        never acts twice (the next gate decides the new stage on its own evidence).
        """
        command_id = event.command_id if isinstance(event, CommandInput) else None
        event = self._with_team_windows(event)
        killed = False
        async with self._locks[flag]:
            for _ in range(MAX_CONFLICTS):
                loaded = await self._states.load(flag)
                if seen is not None and not same_stage(loaded.rollout, seen):
                    return
                event = await self._floored(flag, loaded.rollout, event)
                new, actions = step(loaded.rollout, event)
                if not actions and new == loaded.rollout:
                    return
                write = StateWrite(
                    rev=loaded.rev,
                    rollout=None if new == loaded.rollout else new,
                    outbox=render(flag, new, actions, event.now, self._topics),
                    command_id=command_id,
                    now_ms=int(event.now.timestamp() * 1000),
                    keep_ms=self._keep_ms,
                    delivery=delivery if command_id else "",
                )
                outcome = await self._states.save(flag, write)
                if outcome is SaveOutcome.CONFLICT:
                    continue
                if outcome is SaveOutcome.SAVED:
                    self._metrics.count_actions(flag, new, actions)
                    if new is not None and self.floors is not None:
                        self.floors.saw(flag, new.flag_version)
                await self._outbox.drain(flag)
                # After publishing: history never delays it. A flag that never had a
                # rollout (a refused command for any name) gets none.
                if outcome is SaveOutcome.SAVED and new is not None:
                    await self._history.published(flag, write.outbox)
                    killed = _killed(loaded.rollout, new)
                break
            else:
                raise ControllerError(
                    f"{flag}: could not save after {MAX_CONFLICTS} compare-and-set conflicts"
                )
        if killed:  # after the parent's lock: a child's is taken on its own
            await self._children_told(flag, event)

    async def _floored(self, flag: str, stored: Rollout | None, event: Input) -> Input:
        """A start on a flag the store does not know, with the highest version the topics
        have seen for it: a store that lost the flag lost its version counter, not the
        events counted under its versions (see :mod:`controller.core.serving.versions`)."""
        floors = self.floors
        if stored is not None or floors is None or not isinstance(event, CommandInput):
            return event
        if event.action is not CommandAction.START:
            return event
        floor = max(event.version_floor, await floors.floor(flag))
        return dataclasses.replace(event, version_floor=floor)

    async def _children_told(self, flag: str, event: Input) -> None:
        """Record the kill of ``flag`` on the history of every flag served that requires it
        (a decision each, published, ``recorded``); a failure is logged, the kill stands."""
        killed = (await self._states.load(flag)).rollout
        ended = None if killed is None else killed.ended
        why = ended.reason if ended is not None else ""
        by = ended.kind if ended is not None else "the controller"
        if isinstance(event, CommandInput):
            by = f"{event.actor} (command {event.command_id})"
        for key, loaded in (await self._states.load_all()).items():
            child = loaded.rollout if isinstance(loaded, Loaded) else None
            if child is None or not _requires(child, flag):
                continue
            try:
                await self._record(key, flag, parent_killed(child, split(flag)[0], by, why))
            except ControllerError as exc:
                log.warning("prerequisite_kill_not_recorded", flag=key, error=str(exc)[:300])

    async def _record(self, flag: str, parent: str, record: RecordDecision) -> None:
        """Save ``record`` in ``flag``'s outbox (its state unchanged), publish it, keep it."""
        async with self._locks[flag]:
            for _ in range(MAX_CONFLICTS):
                loaded = await self._states.load(flag)
                if loaded.rollout is None or not _requires(loaded.rollout, parent):
                    return
                messages = render(flag, loaded.rollout, [record], self._now(), self._topics)
                write = StateWrite(rev=loaded.rev, rollout=None, outbox=messages)
                if await self._states.save(flag, write) is SaveOutcome.CONFLICT:
                    continue
                await self._outbox.drain(flag)
                await self._history.published(flag, messages)
                return
        raise ControllerError(f"{flag}: could not record after {MAX_CONFLICTS} conflicts")

    async def offer(self, flag: str, seen: Rollout, event: Input) -> None:
        """:meth:`apply` ``event`` only if it would change ``seen``, the state just loaded.

        Most gates and timers change nothing, so they are first decided without
        the lock and the reload; a change is decided again on the stored state.
        """
        new, actions = step(seen, self._with_team_windows(event))
        if actions or new != seen:
            await self.apply(flag, event, seen=seen)

    def _with_team_windows(self, event: Input) -> Input:
        """``event`` carrying the team's windows, where the machine reads them."""
        if self.team_windows and isinstance(event, GateInput | TickInput | CommandInput):
            return dataclasses.replace(event, team_windows=self.team_windows)
        return event

    async def remind_stale(self, flag: str, completed: Rollout) -> None:
        """The tick of a flag the gates leave alone: a completed flag's one reminder to leave
        the code once it is stale, its time box's end, a pending flag's scheduled start."""
        await self.offer(flag, completed, TickInput(self._now(), self._stale_after))

    async def keys_revoked(self, key_ids: tuple[str, ...], contained: Containment) -> None:
        """Drop the approvals of ``key_ids`` from every rollout holding some (a decision each)."""
        for flag, loaded in (await self._states.load_all()).items():
            rollout = loaded.rollout if isinstance(loaded, Loaded) else None
            given = () if rollout is None else rollout.approvals.approvals
            if any(a.key_id in key_ids for a in given):
                revoked = self.apply(flag, KeysRevokedInput(key_ids, self._now()))
                await contained.run(revoked, where="revoke", flag=flag)

    async def drain(self, flag: str) -> None:
        """Publish what ``flag``'s outbox still holds (a crash or a failed drain left it)."""
        async with self._locks[flag]:
            await self._outbox.drain(flag)

    async def republish(self, flag: str) -> bool:
        """Publish ``flag``'s current state again, signed as usual; whether it has one.

        The state goes through the outbox at the revision it was read at, so a newer
        state saved meanwhile (here or by another instance) is always published after
        it: the compacted topic never ends on an older state. Changes nothing else.
        """
        async with self._locks[flag]:
            for _ in range(MAX_CONFLICTS):
                loaded = await self._states.load(flag)
                rollout = loaded.rollout
                if rollout is None or not rollout.published:
                    await self._outbox.drain(flag)
                    return False
                state = render(flag, rollout, [PublishFlagState()], self._now(), self._topics)
                write = StateWrite(rev=loaded.rev, rollout=None, outbox=state)
                if await self._states.save(flag, write) is SaveOutcome.CONFLICT:
                    continue
                await self._outbox.drain(flag)
                return True
        raise ControllerError(
            f"{flag}: could not republish after {MAX_CONFLICTS} compare-and-set conflicts"
        )


def _killed(before: Rollout | None, after: Rollout) -> bool:
    """Whether the transition from ``before`` to ``after`` killed the flag."""
    return after.phase is Phase.KILLED and (before is None or before.phase is not Phase.KILLED)


def _requires(child: Rollout, parent: str) -> bool:
    """Whether ``child`` is served (running, paused or completed) and requires the flag keyed
    ``parent``."""
    served = child.phase in (Phase.RUNNING, Phase.PAUSED, Phase.COMPLETED)
    requires = child.plan.requires or ()
    return served and any(parent_key(child.flag, needed.flag) == parent for needed in requires)


def same_stage(stored: Rollout | None, seen: Rollout) -> bool:
    """Whether ``stored`` is the rollout, stage and flag version ``seen`` was."""
    return stored is not None and stage_key(stored) == stage_key(seen)


def stage_key(rollout: Rollout) -> tuple[str, int, int]:
    """Which stage, of which rollout, under which flag version: changes with any transition."""
    return rollout.rollout_id, rollout.stage, rollout.flag_version


async def start_refusal(states: RolloutStates, flag: str, plan: Plan | None) -> str | None:
    """Why starting ``flag`` (its key in its environment) with ``plan`` would break the
    prerequisites or holdouts of its environment (:func:`start_problem`), or None; every
    rollout is read, which only a start with prerequisites or a holdout pays for."""
    if plan is None or (not plan.requires and plan.holdout is None):
        return None
    plans: dict[str, Plan] = {}
    for key, loaded in (await states.load_all()).items():
        if isinstance(loaded, StoreError):
            raise loaded  # retried, as any read of the store the command needs
        if loaded.rollout is not None:
            plans[key] = loaded.rollout.plan
    return start_problem(flag, plan, plans)
