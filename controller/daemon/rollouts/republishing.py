"""Every flag's current state published again: at every start, and after a broker lost them.

Apps learn their flags only from the compacted flag-state topic. A broker that
comes back without its data has none of the states, and the engine publishes
a flag's state only when the flag changes: every app started afterwards would
serve control for every flag that does not change (completed ones included), a
silent mass rollback. So the daemon publishes every published flag's state
again when it starts and whenever it creates its topics again
(:mod:`controller.daemon.running.topics`). Each state goes through its flag's
outbox (:meth:`~controller.daemon.rollouts.rollouts.Rollouts.republish`), signed
as usual: republishing the state apps already hold is harmless (the same
version, the same assignment), and a newer state saved meanwhile still goes out
after it.
"""

from __future__ import annotations

import asyncio

import structlog

from controller.core.common import ControllerError
from controller.daemon.rollouts.rollouts import Rollouts
from controller.ports import RolloutStates
from controller.process import Retry

log = structlog.get_logger("controller.daemon.rollouts.republishing")
AT_ONCE = 16
"""Flags republished side by side: a few round trips each, so thousands take seconds."""


class StateRepublisher:
    """Publishes every published flag's current state again, each until it went out."""

    def __init__(self, *, rollouts: Rollouts, states: RolloutStates, retry: Retry) -> None:
        self._rollouts, self._states, self._retry = rollouts, states, retry
        self._running = asyncio.Lock()

    async def republish_all(self, why: str) -> int:
        """Every published flag's state, again; how many. Two calls at once run one after
        the other (the second then publishes what the first may have read too early)."""
        async with self._running:
            try:
                flags = await self._retry(self._states.flags, "list the flags to republish")
            except ControllerError as exc:  # never stops the engine beside it
                log.warning("flag_states_not_republished", why=why, error=str(exc)[:300])
                return 0
            ordered = sorted(flags or ())
            published = 0
            for start in range(0, len(ordered), AT_ONCE):
                chunk = ordered[start : start + AT_ONCE]
                done = await asyncio.gather(*(self._one(flag) for flag in chunk))
                published += sum(done)
            log.info("flag_states_republished", flags=published, why=why)
            return published

    async def _one(self, flag: str) -> bool:
        """Whether ``flag``'s state went out again, retried while the broker or the store is
        away. A flag that cannot be republished (its state unreadable) is logged and left:
        the gate loop alerts on it, and the other flags go on."""
        try:
            done = await self._retry(
                lambda: self._rollouts.republish(flag), f"republish the state of {flag}"
            )
        except Exception as exc:
            log.warning("flag_state_not_republished", flag=flag, error=repr(exc)[:300])
            return False
        return bool(done)
