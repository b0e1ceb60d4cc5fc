"""An event loop of its own on a thread: work sent there, its answer awaited from any loop.

The daemon's loop must answer probes and carry a kill's decision at once; work of some
hundreds of milliseconds (building ``GET /rollouts``, sending an intake's batches) runs on
a :class:`LoopThread` instead, which opens its own clients on its own loop. The threads
share the interpreter, which hands the daemon's loop its turn every few milliseconds
(``sys.getswitchinterval``), so that work slows the daemon a little but never holds it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from typing import Any, Self, TypeVar

_T = TypeVar("_T")
JOIN_SECONDS = 5.0
"""How long closing waits for the thread to end."""


class LoopThread:
    """A thread running an event loop of its own; use it with ``async with``.

    A subclass opens what it needs in :meth:`_open`, on the thread's loop, entering it
    in :attr:`_stack`, which closes it there too.
    """

    def __init__(self, *, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Self:
        self._thread.start()
        try:
            await self._call(self._open())
        except BaseException:
            await self._halt()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self._call(self._stack.aclose())
        finally:
            await self._halt()

    async def _open(self) -> None:
        """What the thread's work needs, opened on its loop (nothing here)."""

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _call(self, work: Coroutine[Any, Any, _T]) -> _T:
        """``work``'s result, run on the thread's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    async def _halt(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, JOIN_SECONDS)
        if not self._thread.is_alive():
            self._loop.close()
