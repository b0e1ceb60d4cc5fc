"""A bounded number of calls in flight to one dependency, the most urgent served first.

A semaphore bounds how many calls one dependency gets at once, so that a
slow answer holds one slot, never the others; when every slot is taken the
waiters are served by priority (lower first, then in arrival order), so a
kill waiting for a slot goes before the sweep's routine reads.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class PrioritySlots:
    """``size`` slots; :meth:`slot` waits for one, the lowest ``priority`` first."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"at least one slot, not {size}")
        self._free = size
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def free(self) -> int:
        return self._free

    @asynccontextmanager
    async def slot(self, priority: int) -> AsyncIterator[None]:
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int) -> None:
        if self._free > 0:  # then every waiter left was cancelled: none is skipped
            self._free -= 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release()  # granted just as it was cancelled: hand the slot on
            raise

    def _release(self) -> None:
        while self._waiting:
            _, _, granted = heapq.heappop(self._waiting)
            if not granted.done():  # a cancelled waiter is skipped
                granted.set_result(None)
                return
        self._free += 1
