"""A store that lost what it held: flags served from their last state until they are back.

Redis is a cache of the topics (docs/operations.md, "When Redis loses its data").
A store that comes back empty has no flag states, so every flag would be served
as unknown: OFREP's ``FLAG_NOT_FOUND``, an absent flag in ``GET /flags``, and
apps on their coded defaults. :class:`StoreLoss` keeps the rollouts last read
from the intact store; every read of the flag states also reads the store's
identity (:class:`~controller.adapters.redis.StoreMarker`), and a read that finds
it gone, or another, serves each flag the store lost from the state it had
until the flag has a state in the store again (rebuilt, or restored by an
operator). The controller never removes a flag's state, so a flag that had one
and has none is lost too, the identity kept: on Redis Cluster, the data of a
master the identity does not live on. A flag that has a state is so never a 404.

The store keeper (:mod:`controller.daemon.running.store_keeper`) is what tells the
loss: it finds the identity gone, records the flags lost (:meth:`StoreLoss.lose`),
raises one ``store_lost`` alert naming each with its stage, writes a new
identity and has the flags rebuilt; ``/readyz`` names the degraded store
(:meth:`StoreLoss.degraded`) until every flag lost is back.

Reads run on the daemon's loop and on the read worker's thread: the state is
changed under a lock, never across an ``await``.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from controller.adapters.redis import StoreMarker
from controller.core.reading import stage_position
from controller.core.rollouts import RaiseAlert, Rollout
from controller.core.wire import JsonObject


@dataclass(slots=True)
class StoreLoss:
    """The store's identity as known, the rollouts last served, and those served from
    memory because the store lost them."""

    identity: str | None = None
    """The store's identity while it holds what it held; None: not claimed yet."""
    last: dict[str, Rollout] = field(default_factory=dict)
    """Every rollout served at the last read of the intact store (or from memory)."""
    lost: dict[str, Rollout] = field(default_factory=dict)
    """The flags served from memory: the store lost them and does not have them yet."""
    rebuilt: set[str] = field(default_factory=set)
    """The flags being rebuilt from the topics now."""
    told: set[str] = field(default_factory=set)
    """The flags lost whose loss an alert named."""
    back: set[str] = field(default_factory=set)
    """The flags lost since the instance started that the store has again."""
    losses: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def served(
        self,
        rollouts: Sequence[Rollout],
        marker: str | None,
        unreadable: Collection[str] = (),
    ) -> list[Rollout]:
        """What to serve from a read of the store that found ``rollouts`` and ``marker``:
        the flags it lost, from their last state, beside those it has (``unreadable``: flags
        it has, whose state it cannot read: not lost)."""
        with self._lock:
            current = {r.flag: r for r in rollouts}
            if self.identity is not None:
                # The controller never removes a flag's state: one that had a state and has
                # none was lost, with the store's identity (seen here before the keeper
                # looked) or alone (on a cluster, one master's data).
                self._lose({*current, *unreadable})
            for flag in [f for f in self.lost if f in current]:
                del self.lost[flag]
                self.told.discard(flag)
                self.back.add(flag)
            held = [r for f, r in self.lost.items() if f not in current]
            whole = [*rollouts, *held]
            self.last = {r.flag: r for r in whole}
            return whole

    def lose(self, rollouts: Sequence[Rollout]) -> dict[str, Rollout]:
        """The store lost what it held and now has ``rollouts``: every flag served from
        memory since the loss (those it lost, not back yet)."""
        with self._lock:
            self._lose({r.flag for r in rollouts})
            self.losses += 1
            return dict(self.lost)

    def hold(self, rollouts: Mapping[str, Rollout]) -> None:
        """Serve ``rollouts`` (flags being rebuilt, as they will be) until the store has
        them, where no state of them is held from before the loss; told already."""
        with self._lock:
            for flag, rollout in rollouts.items():
                if flag not in self.lost:
                    self.lost[flag] = rollout
                    self.told.add(flag)

    def held(self) -> set[str]:
        """Every flag served at the last read, or from memory."""
        with self._lock:
            return {*self.last, *self.lost}

    def untold(self) -> dict[str, Rollout]:
        """The flags lost that no alert named yet."""
        with self._lock:
            return {f: r for f, r in self.lost.items() if f not in self.told}

    def tell(self, flags: Iterable[str]) -> None:
        """An alert named the loss of ``flags``."""
        with self._lock:
            self.told.update(flags)

    def _lose(self, current: Collection[str]) -> None:
        for flag, rollout in self.last.items():
            if flag not in current and flag not in self.lost:
                self.lost[flag] = rollout

    def known(self, identity: str) -> None:
        """The store's identity is ``identity`` from now (claimed at start, or after a loss)."""
        with self._lock:
            self.identity = identity

    def rebuilding(self, flags: set[str]) -> None:
        """The flags being rebuilt from the topics now (none: done)."""
        with self._lock:
            self.rebuilt = set(flags)

    def lost_flags(self) -> list[str]:
        """The flags served from memory now, in order."""
        with self._lock:
            return sorted(self.lost)

    def recovered(self) -> JsonObject | None:
        """The flags the store lost and has again since the instance started, or None: a
        rebuild can take less time than a probe's interval, and this stays to say it came."""
        with self._lock:
            if not self.back:
                return None
            return {"flags": [*sorted(self.back)], "losses": max(self.losses, 1)}

    def degraded(self) -> JsonObject | None:
        """What ``/readyz`` says while flags are served from memory, or None."""
        with self._lock:
            if not self.lost and not self.rebuilt:
                return None
            flags: JsonObject = {flag: _where(r) for flag, r in sorted(self.lost.items())}
            rebuilding = sorted(self.rebuilt)
        return {
            "store": "redis lost the controller's data",
            "reason": (
                f"redis lost the controller's data: {len(flags)} flags are served from their"
                f" last state, {len(rebuilding)} being rebuilt from the decisions and"
                " flag-state topics"
            ),
            "flags": flags,
            "rebuilding": [*rebuilding],
        }


@dataclass(frozen=True, slots=True)
class LossGuard:
    """The flag states' reads, guarded: each reads the store's identity after the states."""

    loss: StoreLoss
    marker: StoreMarker

    async def served(self, rollouts: Sequence[Rollout]) -> list[Rollout]:
        """``rollouts``, just read, with those the store lost (see :meth:`StoreLoss.served`).

        The identity is read after the states: found as known, the states were read
        from the store that held them."""
        return self.loss.served(rollouts, await self.marker.read())


def _where(rollout: Rollout) -> JsonObject:
    """Where ``rollout`` stood, for people: its rollout, phase and stage."""
    position = stage_position(rollout)
    return {
        "rollout_id": rollout.rollout_id,
        "phase": rollout.phase.value,
        "stage": position["label"],
        "percent": rollout.percent,
        "flag_version": rollout.flag_version,
    }


def loss_alert(
    lost: Mapping[str, Rollout], *, rebuilding: bool, identity_lost: bool = True
) -> RaiseAlert:
    """The one alert of a loss: each flag the store lost, with where its rollout stood;
    ``identity_lost`` False: the store kept its identity and lost these flags' states
    alone (on a cluster, one master's data)."""
    flags: dict[str, JsonObject] = {flag: _where(r) for flag, r in sorted(lost.items())}
    each = "; ".join(
        f"{flag}: rollout {w['rollout_id']} {w['phase']} at {w['stage']}"
        for flag, w in flags.items()
    )
    then = (
        "each is being rebuilt at its last decision from the decisions and flag-state topics"
        if rebuilding
        else "restore them with `rolloutctl restore --all-flags`"
    )
    what = (
        "the controller's data (its store identity is gone)"
        if identity_lost
        else "the states of flags, its identity kept (on a cluster: one master's data)"
    )
    summary = (
        f"redis lost {what}: {len(flags)} flags had a state ({each or 'none'}). They are"
        f" served from their last state meanwhile; {then}."
    )
    details: JsonObject = {"flags": dict(flags), "rebuilding": rebuilding}
    details["identity_lost"] = identity_lost
    return RaiseAlert("store_lost", "critical", summary, details)
