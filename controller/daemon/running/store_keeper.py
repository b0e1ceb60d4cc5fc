"""A store that lost the controller's data is told, once, and its flags rebuilt.

Redis is a cache of the topics: every flag's state and rollout can be rebuilt
from the decisions and flag-state topics. The keeper claims the store's identity
at start (:class:`~controller.adapters.redis.StoreMarker`) and looks every
:data:`CHECK_SECONDS`: it reads the flags served, then the identity. An identity
gone, or another, is a loss. Then, in this order:

1. the flags the store had a state for and lost are recorded
   (:meth:`~controller.daemon.serving.store_loss.StoreLoss.lose`): they are served
   from their last state from now until they are back, and ``/readyz`` names them;
2. the store gets a new identity, so the next loss is told too;
3. the version floors are read again from the topics (what was published since
   the last read is above the floor read then);
4. one ``store_lost`` alert names each flag lost, with its rollout and stage (raised by
   the instance whose new identity the store took: one alert a loss, however many
   instances found it);
5. ``rebuild`` is awaited with them, where the daemon rebuilds flags itself.

A store found without an identity at start is new, or lost its data while no
controller ran: ``rebuild`` is awaited with no flags then, and rebuilds from the
topics whatever they say had a state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

import structlog

from controller.adapters.redis import RolloutStore, StoreMarker
from controller.core.common import ControllerError
from controller.core.rollouts import RaiseAlert, Rollout
from controller.daemon.serving import StoreLoss, loss_alert, published_rollouts

log = structlog.get_logger("controller.daemon.running.store_keeper")
CHECK_SECONDS = 1.0
"""How often the keeper reads the store's identity."""
Rebuild = Callable[[Mapping[str, Rollout]], Awaitable[object]]


class StoreKeeper:
    """Tells a store that lost the controller's data, and has its flags rebuilt."""

    def __init__(
        self,
        *,
        marker: StoreMarker,
        states: RolloutStore,
        loss: StoreLoss,
        alarm: Callable[[RaiseAlert], None],
        forget_floors: Callable[[], None] = lambda: None,
        rebuild: Rebuild | None = None,
        every: float = CHECK_SECONDS,
    ) -> None:
        self._marker, self._states, self._loss = marker, states, loss
        self._alarm, self._forget_floors, self._rebuild = alarm, forget_floors, rebuild
        self._every = every
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Claim the store's identity, then look every ``every`` seconds until :meth:`stop`."""
        while not self._stopping.is_set():
            try:
                await self.check()
            except ControllerError as exc:  # Redis away: readiness says so; look again
                log.debug("store_check_skipped", error=str(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._every)

    async def check(self) -> bool:
        """Look once; whether a loss was found."""
        if self._loss.identity is None:
            identity, written = await self._marker.claim()
            self._loss.known(identity)
            if written and self._rebuild is not None:
                log.info("store_identity_claimed", why="the store had none: new, or it lost")
                await self._rebuild({})
            return False
        rollouts = await published_rollouts(self._states)
        marker = await self._marker.read()
        if marker == self._loss.identity:
            self._loss.served(rollouts, marker)
            return False
        await self._lost(rollouts)
        return True

    async def _lost(self, rollouts: list[Rollout]) -> None:
        lost = self._loss.lose(rollouts)
        identity, written = await self._marker.claim()
        self._loss.known(identity)
        self._forget_floors()
        log.error("store_lost", flags=sorted(lost), alerted=written)
        if written:  # the instance that claimed the store again alerts: one alert a loss
            self._alarm(loss_alert(lost, rebuilding=self._rebuild is not None))
        if self._rebuild is not None:
            await self._rebuild(lost)
