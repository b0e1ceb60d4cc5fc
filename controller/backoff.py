"""Exponential back-off that wakes up early when the daemon is asked to stop."""

from __future__ import annotations

import asyncio


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
