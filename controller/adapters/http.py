"""The daemon's small HTTP server: health, readiness, metrics and flag states.

``/healthz`` answers while the event loop runs; ``/readyz`` is 200 only when
Redis answers and this instance owns events partitions (503 with the reason
otherwise); ``/metrics`` is the Prometheus text format; ``/flags`` lists the
current flag states with an ETag, so pollers get 304 when nothing changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, Self

import orjson
from aiohttp import web

Readiness = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
FlagStates = Callable[[], Awaitable[list[dict[str, Any]]]]


class HttpServer:
    """aiohttp application behind ``async with``; binds ``host:port``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        readiness: Readiness,
        flags: FlagStates,
        metrics: Callable[[], bytes],
        metrics_content_type: str,
    ) -> None:
        self._host, self._port = host, port
        self._readiness, self._flags = readiness, flags
        self._metrics, self._metrics_type = metrics, metrics_content_type
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/flags", self._flag_states)
        self._runner = web.AppRunner(app, access_log=None)

    async def __aenter__(self) -> Self:
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._runner.cleanup()

    async def _healthz(self, _request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready, details = await self._readiness()
        return _json({"ready": ready, **details}, status=200 if ready else 503)

    async def _metrics_page(self, _request: web.Request) -> web.Response:
        body = self._metrics()
        return web.Response(body=body, headers={"Content-Type": self._metrics_type})

    async def _flag_states(self, request: web.Request) -> web.Response:
        body = orjson.dumps(await self._flags(), option=orjson.OPT_SORT_KEYS)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, content_type="application/json", headers={"ETag": etag})


def _json(data: dict[str, Any], *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")
