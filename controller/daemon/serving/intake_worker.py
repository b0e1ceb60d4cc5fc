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

from collections.abc import Sequence

from controller.adapters.http import Accepted
from controller.core.wire import InEvent
from controller.daemon.metrics import Metrics
from controller.daemon.serving.event_intake import EventIntake, opened_intake
from controller.kit.loop_thread import LoopThread
from controller.settings import Settings


class IntakeWorker(LoopThread):
    """An :class:`EventIntake` on a thread with its own event loop, Redis client and producer;
    use it with ``async with``."""

    def __init__(self, settings: Settings, *, metrics: Metrics) -> None:
        super().__init__(name="intake-worker")
        self._settings, self._metrics = settings, metrics
        self._intake: EventIntake | None = None

    async def send(self, client: str, events: Sequence[tuple[InEvent, bytes]]) -> Accepted:
        """:meth:`EventIntake.send`, run on the worker's loop."""
        assert self._intake is not None
        return await self._call(self._intake.send(client, events))

    def count(self, outcome: str, events: int) -> None:
        """:meth:`EventIntake.count` (the metrics are safe from any thread)."""
        assert self._intake is not None
        self._intake.count(outcome, events)

    async def _open(self) -> None:
        """The intake's Redis client and producer, opened on (and bound to) this loop."""
        self._intake = await opened_intake(self._stack, self._settings, self._metrics)
