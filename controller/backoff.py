"""Exponential back-off that wakes up early when the daemon is asked to stop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from controller.core.errors import ControllerError

log = structlog.get_logger("controller.retry")
T = TypeVar("T")


class Backoff:
    """Delays from ``initial`` doubling to ``maximum``; :meth:`reset` after a success."""

    def __init__(self, *, initial: float, maximum: float, stopping: asyncio.Event) -> None:
        self._initial = initial
        self._maximum = maximum
        self._delay = initial
        self._stopping = stopping

    @property
    def delay(self) -> float:
        return self._delay

    def reset(self) -> None:
        self._delay = self._initial

    async def wait(self) -> bool:
        """Sleep the current delay, then lengthen it; True if stopping was asked meanwhile."""
        stopped = await sleep_or_stop(self._delay, self._stopping)
        self._delay = min(self._delay * 2, self._maximum)
        return stopped


async def sleep_or_stop(seconds: float, stopping: asyncio.Event) -> bool:
    """Sleep ``seconds`` unless ``stopping`` is set first; True if it was."""
    try:
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    backoff: Backoff,
    on_outage: Callable[[], None] | None = None,
    on_recovery: Callable[[], None] | None = None,
) -> T | None:
    """Run ``call``; while it fails retriably, log, back off and try again.

    ``on_outage`` runs at the first failure and ``on_recovery`` after a success
    that followed failures (ingest pauses and resumes fetching with them).
    Non-retriable errors propagate. Returns None only when stopping was asked
    before the call succeeded.
    """
    failed = False
    while True:
        try:
            result = await call()
        except ControllerError as exc:
            if not exc.retriable:
                raise
            if not failed and on_outage is not None:
                on_outage()
            failed = True
            log.warning("retrying", what=what, error=str(exc), delay_s=round(backoff.delay, 3))
            if await backoff.wait():
                return None
            continue
        if failed:
            if on_recovery is not None:
                on_recovery()
            log.info("recovered", what=what)
        return result
