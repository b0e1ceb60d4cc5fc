"""Closing on the stop path, bounded: a part that cannot close in time is abandoned.

aiokafka's ``stop()`` waits for undelivered batches (up to the producer's
request timeout), for a group coordinator to answer, and may even raise the
``CancelledError`` of its own fetch task; with the broker unreachable the
daemon would outlive its grace period. Every close pushed through
:class:`Closing` ends by the deadline set when draining begins (the grace
period plus :data:`CLOSE_MARGIN_SECONDS`); what is abandoned is logged by
name. The wiring closes every part through it: the Kafka clients, the HTTP
and health listeners, the alarms, the advisor, the Unleash client and Redis.
Abandoning a Kafka client loses nothing: ingest's position is the offset
stored in Redis with each flush (Kafka commits are for lag only), and the
outbox keeps a message in Redis until the broker has acknowledged it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TypeVar

import structlog

log = structlog.get_logger("controller.daemon.running.closing")

_Part = TypeVar("_Part")

CLOSE_MARGIN_SECONDS = 5.0
"""How long past the grace period the closes may run, all of them together."""


class Closing:
    """Runs closes within what remains of the stop deadline, logging what it abandons."""

    def __init__(self, grace: float, margin: float = CLOSE_MARGIN_SECONDS) -> None:
        self._grace, self._margin = grace, margin
        self._deadline: float | None = None

    def begin(self) -> None:
        """Stopping starts now: every close ends by grace + margin from here."""
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().time() + self._grace + self._margin

    def remaining(self) -> float:
        """Seconds left before the deadline (the whole budget if stopping has not begun)."""
        if self._deadline is None:
            return self._grace + self._margin
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    async def enter(
        self, stack: AsyncExitStack, name: str, part: AbstractAsyncContextManager[_Part]
    ) -> _Part:
        """Enter ``part`` and push its exit onto ``stack``, bounded by the deadline."""
        entered = await part.__aenter__()

        async def leave() -> None:
            await part.__aexit__(None, None, None)

        self.push(stack, name, leave)
        return entered

    def push(self, stack: AsyncExitStack, name: str, close: Callable[[], Awaitable[None]]) -> None:
        """Push ``close`` onto ``stack``, bounded by the deadline."""
        stack.push_async_callback(self.close, name, close)

    async def close(self, name: str, close: Callable[[], Awaitable[None]]) -> None:
        """Await ``close`` until the deadline; past it, or if it fails, abandon it (logged)."""
        self.begin()  # a close that runs with no drain before it (start-up failed) is bounded too
        budget = self.remaining()
        task = asyncio.current_task()
        try:
            async with asyncio.timeout(budget):
                await close()
        except TimeoutError:
            log.warning("close_abandoned", part=name, waited_s=round(budget, 3))
        except asyncio.CancelledError:
            if task is not None and task.cancelling():
                raise  # the daemon itself is being cancelled
            # aiokafka's stop can raise the cancellation of its own internal task
            log.warning("close_abandoned", part=name, error="cancelled inside")
        except Exception as exc:
            log.warning("close_abandoned", part=name, error=repr(exc)[:500])
