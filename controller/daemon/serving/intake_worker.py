"""The intakes' sending, on a thread of its own, away from the event loop.

Every batch of ``POST /v1/events`` and every OTLP export ends in
:meth:`EventIntake.send <controller.daemon.serving.event_intake.EventIntake.send>`:
each event digested, the record of sent events read and written
(:class:`~controller.adapters.redis.EventLedger`), each record handed to the
producer and acknowledged. That is some tens of microseconds of the
interpreter an event, all of it on whatever event loop runs it: six clients
sending batches of 500 back to back kept the daemon's loop busy nine tenths
of the time, and every step of a kill's decision waited for its turn behind
them. :class:`IntakeWorker` runs an event loop of its own on a thread, with
its own Redis client and the intake's own producer, and sends there; the
daemon's loop only awaits the answer. The two threads share the
interpreter, which hands the daemon's loop its turn every few milliseconds
(``sys.getswitchinterval``), so a flood of events slows a kill a little but
never holds it (docs/architecture.md, "A kill under load"). What the
intake answers, and when, is unchanged: a batch is answered once the broker
acknowledged it, its known copies named, an event sent before with other
content refused.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from contextlib import AsyncExitStack
from typing import Any, Self, TypeVar

from controller.adapters.http import Accepted
from controller.adapters.kafka import Producer
from controller.adapters.redis import EventLedger, connect
from controller.core.wire import InEvent
from controller.daemon.metrics import Metrics
from controller.daemon.serving.event_intake import EventIntake
from controller.settings import Settings

_T = TypeVar("_T")
JOIN_SECONDS = 5.0
"""How long closing waits for the thread to end."""


class IntakeWorker:
    """An :class:`EventIntake` on a thread with its own event loop, Redis client and producer;
    use it with ``async with``."""

    def __init__(self, settings: Settings, *, metrics: Metrics) -> None:
        self._settings, self._metrics = settings, metrics
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="intake-worker", daemon=True)
        self._stack = AsyncExitStack()
        self._intake: EventIntake | None = None

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

    async def send(self, client: str, events: Sequence[tuple[InEvent, bytes]]) -> Accepted:
        """:meth:`EventIntake.send`, run on the worker's loop."""
        assert self._intake is not None
        return await self._call(self._intake.send(client, events))

    def count(self, outcome: str, events: int) -> None:
        """:meth:`EventIntake.count` (the metrics are safe from any thread)."""
        assert self._intake is not None
        self._intake.count(outcome, events)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _call(self, work: Coroutine[Any, Any, _T]) -> _T:
        """``work``'s result, run on the worker's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    async def _halt(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, JOIN_SECONDS)
        if not self._thread.is_alive():
            self._loop.close()

    async def _open(self) -> None:
        """The intake's Redis client and producer, opened on (and bound to) this loop; the
        producer's timeout keeps a batch answered 503 from being sent later."""
        settings = self._settings
        client = await self._stack.enter_async_context(connect(settings.redis))
        ack_timeout = settings.http.intake_ack_timeout_seconds
        producer = Producer(kafka=settings.kafka, request_timeout_ms=int(ack_timeout * 1000))
        self._intake = EventIntake(
            producer=await self._stack.enter_async_context(producer),
            ledger=EventLedger(client, settings=settings.redis),
            topic=settings.topics.events,
            dedupe_seconds=settings.http.intake_dedupe_seconds,
            metrics=self._metrics,
        )
