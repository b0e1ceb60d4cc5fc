"""Whether the brokers still answer, for ``/readyz``.

The consumers and producers do not say when a broker stops answering: a hung
broker (stopped, partitioned away, its disk full) leaves them waiting, and
the daemon would go on calling itself ready. So the daemon asks the brokers
for metadata every third of ``kafka.unanswered_after_seconds``, each request
bounded by the same third; once no request has been answered for the whole
setting, ``/readyz`` answers 503 naming the brokers and the setting, and
ready again at the next answer. After a request that failed it asks again
within :data:`RETRY_SECONDS`, so brokers that come back are seen as back at
once, not a third of the setting later.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog

from controller.adapters.kafka import topic_names
from controller.core.common import ControllerError
from controller.daemon.serving.starting import kafka_of
from controller.kit.deadlines import deadline
from controller.settings import Settings

log = structlog.get_logger("controller.daemon.serving.broker_watch")

Probe = Callable[[float], Awaitable[object]]
"""One metadata request, given its timeout in seconds."""

RETRY_SECONDS = 1.0
"""The longest wait before asking again after a request that failed."""


class BrokerWatch:
    """Asks the brokers for metadata periodically; says how long they have been silent."""

    def __init__(
        self,
        settings: Settings,
        *,
        probe: Probe | None = None,
        clock: Callable[[], float] = time.monotonic,
        retry_s: float = RETRY_SECONDS,
    ) -> None:
        kafka = settings.kafka
        self._limit = kafka.unanswered_after_seconds
        self._every = self._limit / 3
        self._retry = min(retry_s, self._every)
        self._probe = probe or (lambda timeout_s: topic_names(kafka, timeout_s=timeout_s))
        self._dependency = kafka_of(settings)
        self._clock = clock
        self._answered_at = clock()
        self._error = ""
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Probe every third of the limit (sooner after a failure) until :meth:`stop`."""
        while not self._stopping.is_set():
            await self.probe()
            pause = self._retry if self._error else self._every
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)

    async def probe(self) -> None:
        """Ask once, within a third of the limit; remember when the brokers last answered."""
        try:
            async with deadline(self._every, "a metadata request to the brokers"):
                await self._probe(self._every)
        except (ControllerError, TimeoutError) as exc:
            if not self._error:
                log.warning("broker_unanswered", error=str(exc)[:300])
            self._error = str(exc)[:300] or type(exc).__name__
            return
        if self._error:
            log.info("broker_answers_again")
        self._answered_at, self._error = self._clock(), ""

    def silent(self) -> str | None:
        """Why the daemon is not ready, once the brokers have been silent past the limit."""
        quiet = self._clock() - self._answered_at
        if quiet <= self._limit:
            return None
        detail = f"no metadata answer for {quiet:.0f} s (kafka.unanswered_after_seconds)"
        return self._dependency.down(f"{detail}: {self._error}" if self._error else detail)
