"""A read answer built at most once per ``max_age``, however many clients ask for it.

``GET /rollouts`` for a thousand rollouts is about 1.3 MB of JSON and half a
second of work (every state, every active stage's aggregates, a gate view
each). Built per request, a handful of readers would keep the process busy
and hold back what it must do at once (a kill, a probe). So the answer is
held as bytes with its ETag: a request is answered from the one held while
it is younger than ``max_age``; an older one is built again by one build
that every request arriving meanwhile waits for. The cost is then one build
per ``max_age`` at most, whatever the number of readers; an answer is never
older than ``max_age`` plus a build. A failed build is not held: its error
goes to the requests that waited for it, and the next request tries again.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

BodySource = Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Served:
    """A built answer: its JSON bytes and their ETag."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, body: bytes) -> Served:
        return cls(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


class ReadSnapshot:
    """The latest answer of ``build``, built again once ``max_age`` old, one build at a time."""

    def __init__(
        self,
        build: BodySource,
        *,
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._build, self._max_age, self._clock = build, max_age, clock
        self._held: Served | None = None
        self._built_at = 0.0
        self._building: asyncio.Task[Served] | None = None
        self.builds = 0
        """Builds started, for tests and the curious."""

    async def get(self) -> Served:
        """The answer held if fresh; else the one being built (a build started if none is)."""
        if self._held is not None and self._clock() - self._built_at < self._max_age:
            return self._held
        if self._building is None:
            self.builds += 1
            self._building = asyncio.create_task(self._fresh(), name="read-snapshot")
        # A client that goes away cancels its own wait, never the build the others share.
        return await asyncio.shield(self._building)

    async def _fresh(self) -> Served:
        try:
            served = Served.of(await self._build())
            self._held, self._built_at = served, self._clock()
            return served
        finally:
            self._building = None
