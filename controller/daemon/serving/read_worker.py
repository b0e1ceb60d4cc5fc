"""The read API's large answers, built on a thread of their own, away from the event loop.

``GET /rollouts`` for a thousand rollouts is every state read and decoded,
the active stages' aggregates (one pipeline of script calls since reads were batched;
some 13,000 Redis commands packed, sent and parsed before), a gate view each and
1.3 MB of JSON: about half a second of work that, on the event loop, would
hold back whatever else it runs for as long, a kill's decision or a probe's
answer among them.
:class:`ReadWorker` runs an event loop of its own on a thread, with Redis
connections of its own, and builds the answers of ``/rollouts`` and
``/flags`` there; the daemon's loop only awaits the finished bytes. The two
threads share the interpreter, which hands the daemon's loop its turn every
few milliseconds (``sys.getswitchinterval``), so a build slows it down a
little but never holds it. How often a build runs is bounded by the
snapshots that ask for them (:mod:`controller.adapters.http.read_snapshot`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import orjson

from controller.adapters.redis import (
    HoldoutReads,
    RedisAggregateStore,
    RolloutStore,
    StoreMarker,
    connect,
)
from controller.core.holdouts import HoldoutReport
from controller.core.reading import FlagStates, FlagStateView, RolloutList
from controller.core.release import Environments
from controller.core.rollouts import Rollout, Window
from controller.core.trust import StateSigner
from controller.daemon.outputs import flag_state_fields, signed_states
from controller.daemon.rollouts import SourceReadings, evidence_watch
from controller.daemon.serving.holdouts import HoldoutView
from controller.daemon.serving.status import StatusView, readable
from controller.daemon.serving.store_loss import LossGuard, StoreLoss
from controller.kit.loop_thread import LoopThread
from controller.settings import Settings


class ReadWorker(LoopThread):
    """A thread with its own event loop and Redis client; use it with ``async with``."""

    def __init__(
        self,
        settings: Settings,
        *,
        signer: StateSigner | None,
        clock: Callable[[], datetime],
        team_windows: tuple[Window, ...] = (),
        sources: SourceReadings | None = None,
        environments: Callable[[], Environments] = Environments,
        loss: StoreLoss | None = None,
    ) -> None:
        """``loss``: the flags the store lost, served from their last state (see
        :mod:`.store_loss`); None: served as the store has them."""
        super().__init__(name="read-worker")
        self._loss: StoreLoss | None = loss
        self._guard: LossGuard | None = None
        self._settings, self._signer = settings, signer
        self._sources, self._environments = sources, environments
        self._clock, self._team_windows = clock, team_windows
        self._states: RolloutStore | None = None
        self._status: StatusView | None = None
        self._holdouts: HoldoutView | None = None

    async def rollout_list(self) -> bytes:
        """``GET /rollouts``'s JSON: every rollout with a fresh gate view."""
        return await self._call(self._rollout_list())

    async def flag_list(self) -> bytes:
        """``GET /flags``'s JSON: every flag's state, signed when the daemon signs."""
        return await self._call(self._flag_list())

    async def states(self) -> FlagStates:
        """Every flag's state, unsigned: what OFREP evaluates from."""
        assert self._states is not None
        return await self._call(flag_states(self._states, None, self._guard))

    async def rollouts(self) -> list[Rollout]:
        """Every published rollout, read and decoded here: what OTLP is translated against
        (:class:`~controller.daemon.registries.FlagDirectory`)."""
        assert self._states is not None
        return await self._call(published_rollouts(self._states))

    async def holdout_report(
        self, name: str, environment: str | None, alpha: float, since: datetime | None
    ) -> HoldoutReport | None:
        """``GET /holdouts/{name}``'s report, built here: every rollout read, each flag naming
        the holdout compared (:class:`~controller.daemon.serving.holdouts.HoldoutView`)."""
        assert self._holdouts is not None
        return await self._call(self._holdouts(name, environment, alpha, since))

    async def _open(self) -> None:
        redis = self._settings.redis
        client = await self._stack.enter_async_context(connect(redis))
        self._states = RolloutStore(client, settings=redis)
        if self._loss is not None:
            self._guard = LossGuard(self._loss, StoreMarker(client, settings=redis))
        aggregates = RedisAggregateStore(client, settings=redis, topic=self._settings.topics.events)
        cells = HoldoutReads(client, settings=redis, topic=self._settings.topics.events)
        self._holdouts = HoldoutView(
            states=self._states, read=cells, environments=self._environments
        )
        self._status = StatusView(
            states=self._states,
            aggregates=aggregates,
            stale_after=timedelta(days=self._settings.engine.stale_after_days),
            clock=self._clock,
            team_windows=self._team_windows,
            sources=self._sources,
            evidence=evidence_watch(client, self._settings, self._clock),
            holdouts=cells,
        )

    async def _rollout_list(self) -> bytes:
        assert self._status is not None
        return orjson.dumps(RolloutList(rollouts=await self._status(None)).served())

    async def _flag_list(self) -> bytes:
        assert self._states is not None
        states = await flag_states(self._states, self._signer, self._guard)
        return orjson.dumps([s.served() for s in states.root], option=orjson.OPT_SORT_KEYS)


async def flag_states(
    states: RolloutStore, signer: StateSigner | None, guard: LossGuard | None = None
) -> FlagStates:
    """Every flag's current state as apps see it (signed, with a key), in two round trips.

    ``GET /flags`` and OFREP answer from this, the flag-state topic from what was
    published: a flag with no published state (a start scheduled for a flag never
    served) is in none of them until it starts. With ``guard``, a flag the store lost is
    served from its last state until it is back (:mod:`.store_loss`).
    """
    rollouts = await published_rollouts(states)
    if guard is not None:
        rollouts = await guard.served(rollouts)
    fields = [flag_state_fields(r) for r in rollouts]
    return FlagStates([FlagStateView.model_validate(s) for s in signed_states(fields, signer)])


async def published_rollouts(states: RolloutStore) -> list[Rollout]:
    """Every rollout apps hold a flag state of, in the round trips of one ``load_all``."""
    loaded = [readable(found).rollout for found in (await states.load_all()).values()]
    return [r for r in loaded if r is not None and r.published]
