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
5. the rebuilder reads the topics and plans each flag's rebuild
   (:mod:`.rebuilding`); every look after rebuilds those this instance owns.

A store found without an identity at start is new, or lost its data while no
controller ran: whatever the topics say had a state is rebuilt, told by one
``store_lost`` alert where there was any. Flags whose states are gone while the
identity is kept (the controller never removes one: on Redis Cluster, a master
the identity does not live on lost its data) are told once each and rebuilt the
same way. A flag served before whose state is kept while the set of the flags no
longer lists it (the set's master lost its data) is listed again, not lost: the
gates' sweeps and a daemon started later read that set.

A store found at start with its identity and an empty set of the flags may have
lost that set while no controller ran (on a cluster, its master's data; on one
Redis, the key deleted): the rebuilder reads the topics as after a loss, the
flags they name whose states are kept are listed again, and those whose states
are gone are rebuilt, told by one ``store_lost`` alert (``identity_lost``
false). A start that finds the set holding flags reads no topic for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Mapping
from typing import Protocol

import structlog

from controller.adapters.redis import RolloutStore, StoreMarker
from controller.core.common import ControllerError, StoreError
from controller.core.drafting import Rebuild
from controller.core.rollouts import RaiseAlert, Rollout
from controller.daemon.running.rebuilding import rebuild_alert
from controller.daemon.serving import StoreLoss, loss_alert
from controller.ports import Loaded

log = structlog.get_logger("controller.daemon.running.store_keeper")
CHECK_SECONDS = 1.0
"""How often the keeper reads the store's identity."""


class Rebuilding(Protocol):
    """What rebuilds the flags a lost store took (:class:`.rebuilding.Rebuilder`)."""

    @property
    def pending(self) -> Mapping[str, object]:
        """The flags planned and not rebuilt yet."""

    @property
    def refused(self) -> Mapping[str, str]:
        """The flags lost that cannot be rebuilt, and why."""

    @property
    def kept(self) -> Collection[str]:
        """The flags the topics named at the last plan whose states the store has."""

    async def plan(self) -> Mapping[str, Rebuild]: ...
    async def step(self) -> list[str]: ...


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
        rebuilder: Rebuilding | None = None,
        every: float = CHECK_SECONDS,
    ) -> None:
        self._marker, self._states, self._loss = marker, states, loss
        self._alarm, self._forget_floors, self._rebuilder = alarm, forget_floors, rebuilder
        self._every = every
        self._due: str | None = None
        """Why the flags are to be rebuilt, until the rebuild is planned."""
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Claim the store's identity, then look every ``every`` seconds until :meth:`stop`."""
        while not self._stopping.is_set():
            try:
                await self.check()
            except ControllerError as exc:  # Redis or the broker away: look again
                log.warning("store_check_failed", error=str(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._every)

    async def check(self) -> bool:
        """Look once, and rebuild what waits for this instance; whether a loss was found."""
        if self._loss.identity is None:
            identity, written = await self._marker.claim()
            self._loss.known(identity)
            if written:
                log.info("store_identity_claimed", why="the store had none: new, or it lost")
                self._due = "started empty"
            elif not await self._states.flags():
                log.info("flags_unlisted_at_start", why="the set of the flags is empty")
                self._due = "started unlisted"
            found = False
        else:
            rollouts, unreadable = await self._served()
            marker = await self._marker.read()
            found = marker != self._loss.identity
            if found:
                await self._lost(rollouts)
            else:
                self._loss.served(rollouts, marker, unreadable)
                found = await self._flags_lost()
        await self._rebuild()
        return found

    async def _served(self) -> tuple[list[Rollout], set[str]]:
        """Every rollout apps hold a flag state of, and the flags whose state cannot be
        read (damaged: there, not lost; the gates and reads name them)."""
        loaded = await self._states.load_all()
        loaded |= await self._unlisted(loaded.keys())
        readable = [found.rollout for found in loaded.values() if isinstance(found, Loaded)]
        rollouts = [r for r in readable if r is not None and r.published]
        return rollouts, {flag for flag, found in loaded.items() if isinstance(found, StoreError)}

    async def _unlisted(self, listed: Collection[str]) -> dict[str, Loaded]:
        """The flags served before that the set of flags no longer lists and whose states
        are kept (on a cluster, the set's master lost its data), listed again: the states
        of the flags it lost with it are read beside the others."""
        unlisted = sorted(self._loss.held() - set(listed))
        if not unlisted:
            return {}
        found = zip(unlisted, await self._states.load_many(unlisted), strict=True)
        kept = {f: s for f, s in found if isinstance(s, Loaded) and s.rollout is not None}
        if kept:
            await self._states.list_again(kept)
            log.warning("flags_listed_again", flags=sorted(kept), why="their states kept")
        return kept

    async def _list_kept(self, kept: Collection[str]) -> None:
        """List again the flags the topics name whose states are kept and that the set of
        the flags lacks (it was lost, while no controller ran or with a master)."""
        unlisted = sorted(set(kept) - await self._states.flags())
        if unlisted:
            await self._states.list_again(unlisted)
            log.warning("flags_listed_again", flags=unlisted, why="named by the topics")

    async def _flags_lost(self) -> bool:
        """Flags whose states are gone, the store's identity kept (on a cluster, a master's
        data): told once each, and rebuilt."""
        untold = self._loss.untold()
        if not untold:
            return False
        self._forget_floors()
        log.error("store_lost", flags=sorted(untold), identity_lost=False)
        rebuilding = self._rebuilder is not None
        self._alarm(loss_alert(untold, rebuilding=rebuilding, identity_lost=False))
        self._loss.tell(untold)
        self._due = "lost"
        return True

    async def _rebuild(self) -> None:
        """Plan the rebuild a loss made due (again at the next look if the topics could not
        be read), then rebuild what this instance owns."""
        if self._rebuilder is None:
            return
        if self._due is not None:
            planned = await self._rebuilder.plan()
            await self._list_kept(self._rebuilder.kept)
            due, self._due = self._due, None
            if due.startswith("started") and (planned or self._rebuilder.refused):
                identity_lost = due == "started empty"
                alert = rebuild_alert(planned, self._rebuilder.refused, identity_lost=identity_lost)
                self._alarm(alert)
        if self._rebuilder.pending:
            await self._rebuilder.step()

    async def _lost(self, rollouts: list[Rollout]) -> None:
        lost = self._loss.lose(rollouts)
        identity, written = await self._marker.claim()
        self._loss.known(identity)
        self._forget_floors()
        log.error("store_lost", flags=sorted(lost), alerted=written)
        if written:  # the instance that claimed the store again alerts: one alert a loss
            self._alarm(loss_alert(lost, rebuilding=self._rebuilder is not None))
        self._loss.tell(lost)
        self._due = "lost"
