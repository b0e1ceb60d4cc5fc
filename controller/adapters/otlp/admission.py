"""How many OTLP exports are worked on at once, and how long one may wait for its turn.

An export costs CPU (decoding, translating: about a second for 10,000 spans on
one core) and a broker acknowledgement. Taken all at once, a flood of them
shares the CPU until every one takes longer than its exporter waits (10 s by
default in the OpenTelemetry SDKs and the Collector), the exporters give up,
send again, and the flood grows. So at most ``slots`` exports are worked on at
once, at most ``waiting`` more wait for a slot, and a wait ends at the export's
deadline: past either bound the route answers 503 with ``Retry-After`` at
once, which every OTLP exporter retries, rather than late. The slot is held
until the export's work is done, even when its answer could not wait for it.
"""

from __future__ import annotations

import asyncio

from controller.core.common import ControllerError


class Busy(ControllerError):
    """No slot for this export before its deadline, or too many already waiting."""


class Admission:
    """At most ``slots`` exports at once, at most ``waiting`` more in line (first come, first
    served)."""

    def __init__(self, slots: int, waiting: int) -> None:
        self._free = asyncio.Semaphore(slots)
        self._slots, self._max_waiting = slots, waiting
        self._in = 0
        """Exports holding a slot or waiting for one."""

    @property
    def full(self) -> bool:
        """Whether every slot is taken and the line is as long as it may be."""
        return self._in >= self._slots + self._max_waiting

    async def enter(self, deadline: float) -> None:
        """Take a slot (:meth:`leave` gives it back); :class:`Busy` when none frees before
        ``deadline`` (the event loop's clock) or the line is full."""
        if self.full:
            raise Busy("too many exports are waiting")
        self._in += 1
        try:
            async with asyncio.timeout_at(deadline):
                await self._free.acquire()
        except TimeoutError as exc:
            self._in -= 1
            raise Busy("no turn before the deadline") from exc
        except BaseException:
            self._in -= 1
            raise

    def leave(self) -> None:
        self._free.release()
        self._in -= 1
