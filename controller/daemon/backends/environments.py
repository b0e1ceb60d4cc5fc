"""Which environments the flag platform has, read when a pipeline needs them, kept briefly.

A pipeline whose steps are served by Unleash may start only in environments
the Unleash server has (open-source unleash-server: ``development`` and
``production``). :class:`KnownEnvironments` reads the list through the
platform's admin API and keeps an answer for ``ttl_seconds``, so a burst of
pipeline commands asks once. A failure is never kept and never answered with
an older list: the caller refuses the pipeline with the reason, and the next
command asks again. Concurrent callers share one request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

ENVIRONMENTS_TTL_SECONDS = 30.0
"""How long an answer is used: environments change by hand, and rarely."""


class KnownEnvironments:
    """The platform's environments, as last read within ``ttl_seconds``."""

    def __init__(
        self,
        read: Callable[[], Awaitable[frozenset[str]]],
        *,
        ttl_seconds: float = ENVIRONMENTS_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read, self._ttl, self._clock = read, ttl_seconds, clock
        self._known: tuple[float, frozenset[str]] | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> frozenset[str]:
        """The environments; raises what reading them raised (nothing is kept then)."""
        async with self._lock:
            now = self._clock()
            if self._known is not None and now - self._known[0] < self._ttl:
                return self._known[1]
            found = await self._read()
            self._known = (self._clock(), found)
            return found
