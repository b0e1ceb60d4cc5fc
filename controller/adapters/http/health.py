"""The health listener: ``/healthz``, ``/readyz`` and ``/metrics`` on a port of their own.

The main server (:mod:`controller.adapters.http.server`) caps its connections, and
past the cap it answers 503: right for the API, wrong for a liveness probe,
since a flood of slow clients on the API would then get a healthy process
restarted. So the probes have their own listener (``http.health_port``),
which shares nothing with the main one but the event loop, serves only these
three paths, and is bounded differently:

* it holds at most :data:`MAX_CONNECTIONS` connections, and a new one past
  that closes the *oldest* instead of being refused. A probe sends its whole
  request at once and is answered within milliseconds, so the oldest
  connection is the one that is slow on purpose; a flood on this port then
  costs the flood its own connections, not the probes theirs;
* every answer closes its connection, and the request line and headers must
  arrive within ``http.header_timeout_seconds``, as on the main server.

The port is for the orchestrator and the metrics scraper, not for the
public: do not publish it through a load balancer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Self

import orjson
import structlog
from aiohttp import web

from controller.adapters.http.listening import Listener
from controller.settings import HttpSettings

Readiness = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
MAX_CONNECTIONS = 32
"""Connections held at once; a probe needs one for a few milliseconds."""
MAX_HEADERS = 32
log = structlog.get_logger("controller.health")


class HealthServer(Listener):
    """The probes' aiohttp application behind ``async with``; binds ``host:port``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        readiness: Readiness,
        metrics: Callable[[], bytes],
        metrics_content_type: str,
        limits: HttpSettings | None = None,
    ) -> None:
        self._readiness = readiness
        self._metrics, self._metrics_type = metrics, metrics_content_type
        limits = limits or HttpSettings()
        self.evicted = 0
        """Connections closed to make room for a newer one."""
        app = web.Application(client_max_size=1024)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_page)
        runner = web.AppRunner(
            app,
            access_log=None,
            keepalive_timeout=limits.header_timeout_seconds,
            lingering_time=0,
            max_line_size=limits.max_header_bytes,
            max_field_size=limits.max_header_bytes,
            max_headers=MAX_HEADERS,
        )
        super().__init__(host=host, port=port, runner=runner)

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        log.info("health_listening", host=self._host, port=self.port)
        return self

    def _connection(self) -> asyncio.BaseProtocol:
        """aiohttp's protocol for a new connection, after closing the oldest past the cap."""
        server = self._server()
        open_now = server.connections  # oldest first: aiohttp keeps them in arrival order
        for oldest in open_now[: max(len(open_now) - MAX_CONNECTIONS + 1, 0)]:
            oldest.force_close()
            self.evicted += 1
        return server()

    async def _healthz(self, _request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready, details = await self._readiness()
        return _json({"ready": ready, **details}, status=200 if ready else 503)

    async def _metrics_page(self, _request: web.Request) -> web.Response:
        response = web.Response(body=self._metrics(), headers={"Content-Type": self._metrics_type})
        response.force_close()
        return response


def _json(data: dict[str, Any], *, status: int = 200) -> web.Response:
    response = web.Response(body=orjson.dumps(data), status=status, content_type="application/json")
    response.force_close()  # a probe connection is never reused: the slot is free at once
    return response
