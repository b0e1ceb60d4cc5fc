"""The read API: ``GET /flags`` for apps, ``GET /rollouts*`` for operators.

``/flags`` lists the current flag states with an ETag, so pollers get 304
when nothing changed. ``/rollouts`` and ``/rollouts/{flag}`` show each
rollout's phase, stage, time in stage and the gate's current evidence (what
``rolloutctl status`` prints); ``/rollouts/{flag}/history`` its gate history,
stage by stage.

Nothing a reader does may slow what the process must do at once (a kill, a
probe; #37), so:

* ``/flags`` and ``/rollouts`` are served from a :class:`ReadSnapshot` (at most
  ``http.reads_max_age_seconds`` old, one build however many readers), with an
  ETag and 304 for ``If-None-Match``; the daemon builds them away from its
  event loop (:mod:`controller.daemon.read_worker`);
* each client (its remote address) may make ``http.reads_per_second`` requests
  to ``/rollouts*`` a second (a token bucket, a second's worth at once); past it
  429 with ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from controller.adapters.read_snapshot import BodySource, ReadSnapshot, Served
from controller.core.rates import RateLimiter
from controller.core.views import RolloutHistory, RolloutStatus

StatusSource = Callable[[str | None], Awaitable[list[RolloutStatus]]]
HistorySource = Callable[[str], Awaitable[RolloutHistory | None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FlagListRoute:
    """``GET /flags`` from a snapshot of ``build``'s answer."""

    def __init__(self, build: BodySource, *, max_age: float) -> None:
        self.snapshot = ReadSnapshot(build, max_age=max_age)

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/flags", self._list)

    async def _list(self, request: web.Request) -> web.Response:
        return answer(request, await self.snapshot.get())


class RolloutRoutes:
    """``GET /rollouts``, ``/rollouts/{flag}`` and ``/rollouts/{flag}/history``."""

    def __init__(
        self,
        *,
        status: StatusSource,
        history: HistorySource | None,
        listing: BodySource | None = None,
        max_age: float,
        requests_per_second: float,
        count_limited: Callable[[], None] | None = None,
    ) -> None:
        """``listing``: the whole list's JSON; built from ``status`` here when not given."""
        self._status, self._history = status, history
        self.snapshot = ReadSnapshot(listing or self._listing, max_age=max_age)
        burst = max(1.0, requests_per_second)
        self._limiter = RateLimiter(requests_per_second, burst, clock=time.monotonic)
        self._count_limited = count_limited or (lambda: None)

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/rollouts", self._guard(self._list))
        router.add_get("/rollouts/{flag}", self._guard(self._one))
        router.add_get("/rollouts/{flag}/history", self._guard(self._flag_history))

    def _guard(self, handler: Handler) -> Handler:
        """``handler`` within the client's rate."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            wait = self._limiter.wait(f"addr:{request.remote or 'unknown'}")
            if wait > 0:
                self._count_limited()
                limited = error(429, "over this client's read rate; retry after Retry-After")
                limited.headers["Retry-After"] = str(max(1, math.ceil(wait)))
                return limited
            return await handler(request)

        return guarded

    async def _listing(self) -> bytes:
        return orjson.dumps({"rollouts": [s.served() for s in await self._status(None)]})

    async def _list(self, request: web.Request) -> web.Response:
        return answer(request, await self.snapshot.get())

    async def _one(self, request: web.Request) -> web.Response:
        flag = request.match_info["flag"]
        found = await self._status(flag)
        if not found:
            return error(404, f"no rollout for flag {flag!r}")
        return _json(found[0].served())

    async def _flag_history(self, request: web.Request) -> web.Response:
        flag = request.match_info["flag"]
        found = await self._history(flag) if self._history is not None else None
        if found is None:
            return error(404, f"no rollout history for flag {flag!r}")
        return _json(found.served())


def answer(request: web.Request, served: Served) -> web.Response:
    """``served``, or 304 when the request's ``If-None-Match`` names its ETag."""
    if request.headers.get("If-None-Match") == served.etag:
        return web.Response(status=304, headers={"ETag": served.etag})
    return web.Response(
        body=served.body, content_type="application/json", headers={"ETag": served.etag}
    )


def error(status: int, reason: str) -> web.Response:
    return _json({"error": reason}, status=status)


def _json(data: object, *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")
